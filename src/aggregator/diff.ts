import type { RoutingTable } from '../model/types.js';
import { canonicalJson, serviceFingerprint } from './build.js';
import type { DiffSection, TableDiff } from './types.js';

function section<T>(a: Record<string, T>, b: Record<string, T>, text: (x: T) => string = canonicalJson): DiffSection {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const k of Object.keys(b)) {
    if (!(k in a)) added.push(k);
    else if (a[k] !== b[k] && text(a[k] as T) !== text(b[k] as T)) changed.push(k);
  }
  for (const k of Object.keys(a)) if (!(k in b)) removed.push(k);
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

function byKey<T>(items: T[], key: (x: T) => string): Record<string, T> {
  const out: Record<string, T> = {};
  for (const x of items) out[key(x)] = x;
  return out;
}

/** What changed from table `a` to table `b`, by service id, route id, entrypoint name and VIP key. */
export function diffTables(a: RoutingTable, b: RoutingTable): TableDiff {
  const services = section(a.services, b.services, (s) => `${s.dnsHidden ? 'h' : ''}${serviceFingerprint(s)}`);
  const routes = section(
    byKey(a.routes, (r) => r.id),
    byKey(b.routes, (r) => r.id),
  );
  const entrypoints = section(a.entrypoints, b.entrypoints);
  const vips = section(
    byKey(a.vips, (v) => v.key),
    byKey(b.vips, (v) => v.key),
  );
  const empty = [services, routes, entrypoints, vips].every((s) => s.added.length + s.removed.length + s.changed.length === 0);
  return { from: a.version, to: b.version, services, routes, entrypoints, vips, empty };
}
