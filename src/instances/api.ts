/**
 * `GET /v1/instances`: every Portico instance on this store, what it serves, and which one lags.
 * `GET /v1/cluster` answers the same (its name before the scheduler took the word "cluster"); scripts
 * written against it keep working.
 */
import type { RouteRegistrar } from '../api/types.js';
import type { Store } from '../store/types.js';
import { instancesView } from './instances.js';

export function registerInstancesApi(
  route: RouteRegistrar,
  deps: { store: Store; sharedKey: string; self: string; staleAfterMs?: number },
): void {
  const handler = async (): Promise<unknown> => ({
    self: deps.self,
    ...(await instancesView(deps.store, deps.sharedKey, Date.now(), deps.staleAfterMs)),
  });
  const description =
    'An instance is stale when it serves an older shared config revision than the store holds, or has not reported for 20 s. 503 when the store cannot be reached.';
  route('GET', '/v1/instances', handler, {
    doc: {
      summary: 'The instances sharing this store: the table and shared config revision each serves, readiness, and which are stale',
      description,
      tags: ['instances'],
    },
  });
  route('GET', '/v1/cluster', handler, {
    doc: { summary: 'Deprecated name of GET /v1/instances (same answer)', description, tags: ['instances'] },
  });
}
