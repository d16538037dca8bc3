import type { RoutingTable } from '../model/types.js';
import { canonicalJson, serviceFingerprint } from './build.js';
import type { DiffSection, TableDiff } from './types.js';

interface Keyed<T> {
  keys(): Iterable<string>;
  has(k: string): boolean;
  get(k: string): T | undefined;
}

function keyed<T>(r: Record<string, T>): Keyed<T> {
  return { keys: () => Object.keys(r), has: (k) => Object.prototype.hasOwnProperty.call(r, k), get: (k) => r[k] };
}

function section<T>(a: Keyed<T>, b: Keyed<T>, text: (x: T) => string = canonicalJson): DiffSection {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const k of b.keys()) {
    if (!a.has(k)) added.push(k);
    else {
      const x = a.get(k) as T;
      const y = b.get(k) as T;
      if (x !== y && text(x) !== text(y)) changed.push(k);
    }
  }
  for (const k of a.keys()) if (!b.has(k)) removed.push(k);
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

function byKey<T>(items: T[], key: (x: T) => string): Keyed<T> {
  const out: Record<string, T> = {};
  for (const x of items) out[key(x)] = x;
  return keyed(out);
}

/**
 * What changed from table `a` to table `b`, by service id, route id, entrypoint name and VIP key. Parts the
 * two tables share (the same array or map) are not compared at all.
 */
export function diffTables(a: RoutingTable, b: RoutingTable): TableDiff {
  const none = (): DiffSection => ({ added: [], removed: [], changed: [] });
  const services =
    a.services === b.services ? none() : section(a.services, b.services, (s) => `${s.dnsHidden ? 'h' : ''}${serviceFingerprint(s)}`);
  const routes =
    a.routes === b.routes
      ? none()
      : section(
          byKey(a.routes, (r) => r.id),
          byKey(b.routes, (r) => r.id),
        );
  const entrypoints = section(keyed(a.entrypoints), keyed(b.entrypoints));
  const vips =
    a.vips === b.vips
      ? none()
      : section(
          byKey(a.vips, (v) => v.key),
          byKey(b.vips, (v) => v.key),
        );
  const empty = [services, routes, entrypoints, vips].every((s) => s.added.length + s.removed.length + s.changed.length === 0);
  return { from: a.version, to: b.version, services, routes, entrypoints, vips, empty };
}
