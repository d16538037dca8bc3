/**
 * `/readyz` and the instance record's readiness: ready while there is a table to serve and every plane
 * serves it; degraded (still ready) while a feed or the shared store is in trouble.
 */
import type { Readiness } from './api/types.js';
import type { DataPlane } from './model/plane.js';
import type { RoutingTable } from './model/types.js';
import type { Provider } from './providers/types.js';
import type { Store } from './store/types.js';

export function readiness(served: RoutingTable, providers: Provider[], planes: DataPlane[], store: Store): Required<Readiness> {
  const reasons: string[] = [];
  if (served.version === 0 && providers.every((p) => p.status().state !== 'ok')) reasons.push('no routing table yet');
  const health = store.health();
  if (!health.ok)
    reasons.push(
      `store ${health.target}: unreachable${health.since ? ` since ${health.since}` : ''}; serving the last table, writes refused`,
    );
  for (const p of providers) {
    const s = p.status();
    if (s.state === 'error' || s.state === 'degraded')
      reasons.push(`provider ${s.name}: ${s.state}${s.lastError ? `: ${s.lastError}` : ''}`);
  }
  for (const pl of planes) {
    const s = pl.status();
    if (s.state !== 'serving') reasons.push(`plane ${s.name}: ${s.state}${s.error ? `: ${s.error}` : ''}`);
  }
  // A refused config edit or a store outage is reported (degraded), but we still serve the last good
  // table: ready stays true as long as a table exists and every plane serves. Only "nothing to serve"
  // makes us unready, so an outage of the shared store does not take every instance out of rotation.
  const fatal = reasons.filter((r) => !r.startsWith('provider ') && !r.startsWith('store '));
  return { ready: fatal.length === 0, degraded: reasons.length > 0, reasons };
}
