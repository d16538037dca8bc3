/** `GET /v1/cluster`: every instance on this store, what it serves, and which one lags. */
import type { ApiServer } from '../api/server.js';
import type { Store } from '../store/types.js';
import { clusterView } from './instances.js';

type Route = ApiServer['route'];

export function registerClusterApi(route: Route, deps: { store: Store; sharedKey: string; self: string; staleAfterMs?: number }): void {
  route('GET', '/v1/cluster', async () => ({ self: deps.self, ...(await clusterView(deps.store, deps.sharedKey, Date.now(), deps.staleAfterMs)) }), {
    doc: {
      summary: 'The instances sharing this store: the table and shared config revision each serves, readiness, and which are stale',
      description: 'An instance is stale when it serves an older shared config revision than the store holds, or has not reported for 20 s. 503 when the store cannot be reached.',
      tags: ['cluster'],
    },
  });
}
