/**
 * Served routing tables on their way from the control process to the data-plane workers (Node's JSON IPC).
 * A worker's planes patch what changed only when every part the change does not name is the very same
 * object as in the table they serve, so a table cannot just be serialised: what the worker had must be put
 * back by reference. One message per served version, built once by the control and sent to every worker:
 *
 * - whole: the table, every part. The first table a worker gets, or one after it lost track.
 * - change (from version `from`, hash `fromHash`): the services upserted (objects) and removed (ids), and
 *   only the other parts that are not the previous table's own objects. In `routes` and `vips` an element
 *   that is the previous table's first of its id / key (same object; for a VIP, also one equal field by
 *   field, since the VIP stage makes every entry anew when any changes) goes as that id / key (route ids
 *   are not unique across providers: a later route of an id goes whole); an `entrypoints` value that is the
 *   previous one goes as its name; a conflict or warning equal to one of the previous table's goes as that
 *   one's index. The worker puts its own objects back for them.
 *
 * decodeTable() gives the planes a table indistinguishable from the control's (same content, hash, version)
 * and the TableChange the control's planes would get. A change that does not start from the worker's table
 * is a WireError (the worker asks for a whole table). A whole table arriving where one is served already (a
 * restarted control numbers from 1 again) is made a change by resync(): equal services, routes, VIPs,
 * entrypoints are the served table's objects, so the planes patch what differs instead of compiling it all.
 *
 * Decoded tables are frozen as the aggregator's are: everything but endpoint objects (the aggregator leaves
 * those unfrozen for speed; their arrays are frozen).
 */
import { deepEqual } from '../model/canonical.js';
import { ServiceMap } from '../model/service-map.js';
import type { Conflict, Entrypoint, Route, RoutingTable, Service, TableChange, TableWarning, VipEntry } from '../model/types.js';

/** The header every table message carries. */
interface TableMessageBase {
  t: 'table';
  version: number;
  hash: string;
  createdAt: string;
}

/** A table with every part. */
export interface WholeTableMessage extends TableMessageBase {
  whole: true;
  /** In id order. */
  services: Service[];
  routes: Route[];
  entrypoints: Record<string, Entrypoint>;
  vips: VipEntry[];
  conflicts: Conflict[];
  warnings: TableWarning[];
  sources: Record<string, string>;
}

/** What differs from the table `from` (whose hash is `fromHash`). A part left out is that table's. */
export interface ChangeTableMessage extends TableMessageBase {
  whole: false;
  from: number;
  fromHash: string;
  upserted: Service[];
  removed: string[];
  /** A string: the previous table's route of that id. */
  routes?: Array<string | Route>;
  /** A string: the previous table's entrypoint of that name. */
  entrypoints?: Record<string, string | Entrypoint>;
  /** A string: the previous table's VIP of that key. */
  vips?: Array<string | VipEntry>;
  /** A number: the previous table's conflict at that index. */
  conflicts?: Array<number | Conflict>;
  /** A number: the previous table's warning at that index. */
  warnings?: Array<number | TableWarning>;
  sources?: Record<string, string>;
}

export type TableMessage = WholeTableMessage | ChangeTableMessage;

/**
 * A message that cannot be decoded: `stale` when it is a change from a table the worker does not serve
 * (ask for a whole one), `malformed` when it is not a table message or names what the previous table lacks.
 */
export class WireError extends Error {
  constructor(
    message: string,
    readonly reason: 'stale' | 'malformed',
  ) {
    super(message);
    this.name = 'WireError';
  }
}

// --- encode (control side)

/**
 * The message for `table`: a change from `previous` when `change` starts from it, else the whole table.
 * A change that does not match `table` (an upserted id it lacks, a removed id it has) is sent whole too.
 */
export function encodeTable(table: RoutingTable, previous: RoutingTable | undefined, change: TableChange | undefined): TableMessage {
  if (previous === undefined || change === undefined || change.from !== previous.version) return encodeWhole(table);
  const upserted: Service[] = [];
  for (const id of change.upserted) {
    const s = table.services.get(id);
    if (s === undefined) return encodeWhole(table);
    upserted.push(s);
  }
  for (const id of change.removed) if (table.services.has(id)) return encodeWhole(table);
  const msg: ChangeTableMessage = {
    t: 'table',
    whole: false,
    version: table.version,
    hash: table.hash,
    createdAt: table.createdAt,
    from: previous.version,
    fromHash: previous.hash,
    upserted,
    removed: [...change.removed],
  };
  if (table.routes !== previous.routes) msg.routes = encodeRefs(table.routes, previous.routes, routeIndex, routeId);
  if (table.entrypoints !== previous.entrypoints) msg.entrypoints = encodeEntrypoints(table.entrypoints, previous.entrypoints);
  if (table.vips !== previous.vips) msg.vips = encodeRefs(table.vips, previous.vips, vipIndex, vipKey, flatEqual);
  if (table.conflicts !== previous.conflicts) msg.conflicts = encodeByText(table.conflicts, previous.conflicts);
  if (table.warnings !== previous.warnings) msg.warnings = encodeByText(table.warnings, previous.warnings);
  if (table.sources !== previous.sources) msg.sources = table.sources;
  return msg;
}

function encodeWhole(table: RoutingTable): WholeTableMessage {
  return {
    t: 'table',
    whole: true,
    version: table.version,
    hash: table.hash,
    createdAt: table.createdAt,
    services: [...table.services.values()],
    routes: table.routes,
    entrypoints: table.entrypoints,
    vips: table.vips,
    conflicts: table.conflicts,
    warnings: table.warnings,
    sources: table.sources,
  };
}

/**
 * What changed from `previous` to `table` by identity alone (a service that is not the same object is
 * named; a part that is not the same object is flagged). For a table handed over without a change (the
 * pipeline's after a stage-only change): `encodeTable(t, prev, change ?? identityChange(t, prev))` sends
 * what differs instead of the whole table. Costs one walk of the service ids.
 */
export function identityChange(table: RoutingTable, previous: RoutingTable): TableChange {
  const upserted: string[] = [];
  const removed: string[] = [];
  if (table.services !== previous.services) {
    for (const id of table.services.keys()) if (table.services.get(id) !== previous.services.get(id)) upserted.push(id);
    for (const id of previous.services.keys()) if (!table.services.has(id)) removed.push(id);
  }
  return {
    from: previous.version,
    upserted,
    removed,
    routes: table.routes !== previous.routes,
    entrypoints: table.entrypoints !== previous.entrypoints,
    vips: table.vips !== previous.vips,
  };
}

function encodeRefs<T extends object>(
  next: readonly T[],
  prev: readonly T[],
  cache: WeakMap<readonly T[], Map<string, T>>,
  key: (x: T) => string,
  equal?: (a: T, b: T) => boolean,
): Array<string | T> {
  const index = indexBy(prev, cache, key);
  return next.map((x) => {
    const k = key(x);
    const p = index.get(k);
    return p && (p === x || (equal !== undefined && equal(p, x))) ? k : x;
  });
}

function encodeEntrypoints(next: Record<string, Entrypoint>, prev: Record<string, Entrypoint>): Record<string, string | Entrypoint> {
  const out: Record<string, string | Entrypoint> = {};
  for (const name of Object.keys(next)) {
    const ep = next[name] as Entrypoint;
    const p = Object.hasOwn(prev, name) ? prev[name] : undefined;
    out[name] = p !== undefined && (p === ep || deepEqual(p, ep)) ? name : ep;
  }
  return out;
}

/** Each element of `next` equal to one of `prev` as its index there (lists with no key of their own). */
function encodeByText<T extends object>(next: readonly T[], prev: readonly T[]): Array<number | T> {
  let texts: Map<string, number> | undefined;
  return next.map((x, i) => {
    if (prev[i] === x) return i;
    if (texts === undefined) {
      texts = new Map();
      for (let j = prev.length - 1; j >= 0; j--) texts.set(JSON.stringify(prev[j]), j);
    }
    return texts.get(JSON.stringify(x)) ?? x;
  });
}

// --- decode (worker side)

/**
 * The table `msg` carries, made from `prev` (the table the worker serves), and what changed from `prev`
 * (undefined for a first, whole table). Throws WireError when `msg` is a change from another table.
 */
export function decodeTable(prev: RoutingTable | undefined, msg: TableMessage): { table: RoutingTable; change?: TableChange } {
  checkHeader(msg);
  if (msg.whole) {
    const next = decodeWhole(msg);
    return prev === undefined ? { table: next } : resync(prev, next);
  }
  if (prev === undefined) throw new WireError(`table ${msg.version}: a change from version ${msg.from}, but no table is served`, 'stale');
  if (prev.version !== msg.from || prev.hash !== msg.fromHash)
    throw new WireError(`table ${msg.version}: a change from version ${msg.from}, but version ${prev.version} is served`, 'stale');
  if (!Array.isArray(msg.upserted) || !Array.isArray(msg.removed)) throw malformed(msg, 'upserted/removed are not lists');
  const upserted = msg.upserted.map((s) => freezeService(checkService(msg, s)));
  const services = upserted.length === 0 && msg.removed.length === 0 ? prev.services : prev.services.with(upserted, msg.removed);
  const table: RoutingTable = Object.freeze({
    version: msg.version,
    hash: msg.hash,
    createdAt: msg.createdAt,
    services,
    routes: msg.routes ? decodeRefs(msg, msg.routes, prev.routes, routeIndex, routeId, 'route') : prev.routes,
    entrypoints: msg.entrypoints ? decodeEntrypoints(msg, msg.entrypoints, prev.entrypoints) : prev.entrypoints,
    vips: msg.vips ? decodeRefs(msg, msg.vips, prev.vips, vipIndex, vipKey, 'VIP') : prev.vips,
    conflicts: msg.conflicts ? decodeByIndex(msg, msg.conflicts, prev.conflicts, 'conflict') : prev.conflicts,
    warnings: msg.warnings ? decodeByIndex(msg, msg.warnings, prev.warnings, 'warning') : prev.warnings,
    sources: msg.sources ? Object.freeze(msg.sources) : prev.sources,
  });
  const change: TableChange = {
    from: prev.version,
    upserted: upserted.map((s) => s.id),
    removed: msg.removed,
    routes: msg.routes !== undefined,
    entrypoints: msg.entrypoints !== undefined,
    vips: msg.vips !== undefined,
  };
  return { table, change };
}

function checkHeader(msg: TableMessage): void {
  const m = msg as unknown as Record<string, unknown> | null;
  if (m === null || typeof m !== 'object' || m.t !== 'table' || typeof m.whole !== 'boolean' || typeof m.version !== 'number')
    throw new WireError('not a table message', 'malformed');
  if (typeof m.hash !== 'string' || typeof m.createdAt !== 'string') throw malformed(msg, 'no hash or createdAt');
}

function checkService(msg: TableMessage, s: Service): Service {
  if (s === null || typeof s !== 'object' || typeof s.id !== 'string' || !Array.isArray(s.endpoints))
    throw malformed(msg, 'a service without id or endpoints');
  return s;
}

function malformed(msg: TableMessage, what: string): WireError {
  return new WireError(`table ${msg.version}: ${what}`, 'malformed');
}

function decodeWhole(msg: WholeTableMessage): RoutingTable {
  for (const part of ['services', 'routes', 'vips', 'conflicts', 'warnings'] as const)
    if (!Array.isArray(msg[part])) throw malformed(msg, `${part} is not a list`);
  return Object.freeze({
    version: msg.version,
    hash: msg.hash,
    createdAt: msg.createdAt,
    services: ServiceMap.from(msg.services.map((s) => [checkService(msg, s).id, freezeService(s)] as const)),
    routes: freezeDeep(msg.routes),
    entrypoints: freezeDeep(msg.entrypoints),
    vips: freezeDeep(msg.vips),
    conflicts: freezeDeep(msg.conflicts),
    warnings: freezeDeep(msg.warnings),
    sources: freezeDeep(msg.sources),
  });
}

function decodeRefs<T extends object>(
  msg: TableMessage,
  refs: Array<string | T>,
  prev: readonly T[],
  cache: WeakMap<readonly T[], Map<string, T>>,
  key: (x: T) => string,
  what: string,
): T[] {
  if (!Array.isArray(refs)) throw malformed(msg, `${what}s are not a list`);
  const index = indexBy(prev, cache, key);
  const out = refs.map((x) => {
    if (typeof x !== 'string') return freezeDeep(x);
    const p = index.get(x);
    if (p === undefined) throw malformed(msg, `${what} ${x} is not in the previous table`);
    return p;
  });
  return Object.freeze(out) as T[];
}

function decodeEntrypoints(
  msg: TableMessage,
  refs: Record<string, string | Entrypoint>,
  prev: Record<string, Entrypoint>,
): Record<string, Entrypoint> {
  const out: Record<string, Entrypoint> = {};
  for (const name of Object.keys(refs)) {
    const x = refs[name] as string | Entrypoint;
    if (typeof x !== 'string') out[name] = freezeDeep(x);
    else if (Object.hasOwn(prev, x)) out[name] = prev[x] as Entrypoint;
    else throw malformed(msg, `entrypoint ${x} is not in the previous table`);
  }
  return Object.freeze(out);
}

function decodeByIndex<T extends object>(msg: TableMessage, refs: Array<number | T>, prev: readonly T[], what: string): T[] {
  if (!Array.isArray(refs)) throw malformed(msg, `${what}s are not a list`);
  const out = refs.map((x) => {
    if (typeof x !== 'number') return freezeDeep(x);
    const p = prev[x];
    if (p === undefined) throw malformed(msg, `${what} #${x} is not in the previous table`);
    return p;
  });
  return Object.freeze(out) as T[];
}

// --- resync

/**
 * `next` (a table from elsewhere: another control's numbering) as a change from `prev`: every service,
 * route, VIP and entrypoint of `next` equal to one of `prev` is replaced by `prev`'s object, and a part
 * wholly equal is `prev`'s own, so the change names only what differs. Version, hash and createdAt are
 * `next`'s. Costs a comparison of both tables (nothing when their hashes are equal: equal content).
 */
export function resync(prev: RoutingTable, next: RoutingTable): { table: RoutingTable; change: TableChange } {
  if (prev.hash === next.hash) {
    const table: RoutingTable = Object.freeze({ ...prev, version: next.version, hash: next.hash, createdAt: next.createdAt });
    return { table, change: { from: prev.version, upserted: [], removed: [], routes: false, entrypoints: false, vips: false } };
  }
  const upserted: Service[] = [];
  const removed: string[] = [];
  for (const [id, s] of next.services) {
    const p = prev.services.get(id);
    if (p === undefined || (p !== s && !deepEqual(p, s))) upserted.push(freezeService(s));
  }
  for (const id of prev.services.keys()) if (!next.services.has(id)) removed.push(id);
  const services = upserted.length === 0 && removed.length === 0 ? prev.services : prev.services.with(upserted, removed);
  const routes = reuseList(next.routes, prev.routes, routeId);
  const vips = reuseList(next.vips, prev.vips, vipKey);
  const entrypoints = reuseEntrypoints(next.entrypoints, prev.entrypoints);
  const table: RoutingTable = Object.freeze({
    version: next.version,
    hash: next.hash,
    createdAt: next.createdAt,
    services,
    routes,
    entrypoints,
    vips,
    conflicts: deepEqual(prev.conflicts, next.conflicts) ? prev.conflicts : freezeDeep(next.conflicts),
    warnings: deepEqual(prev.warnings, next.warnings) ? prev.warnings : freezeDeep(next.warnings),
    sources: deepEqual(prev.sources, next.sources) ? prev.sources : freezeDeep(next.sources),
  });
  const change: TableChange = {
    from: prev.version,
    upserted: upserted.map((s) => s.id),
    removed,
    routes: routes !== prev.routes,
    entrypoints: entrypoints !== prev.entrypoints,
    vips: vips !== prev.vips,
  };
  return { table, change };
}

/** `next` with each element equal to one of `prev` (of the same key) replaced by it; `prev` itself if all are. */
function reuseList<T extends object>(next: readonly T[], prev: readonly T[], key: (x: T) => string): T[] {
  const byKey = new Map<string, T[]>();
  for (const p of prev) {
    const k = key(p);
    const list = byKey.get(k);
    if (list) list.push(p);
    else byKey.set(k, [p]);
  }
  const out = next.map((x) => byKey.get(key(x))?.find((p) => p === x || deepEqual(p, x)) ?? freezeDeep(x));
  if (out.length === prev.length && out.every((x, i) => x === prev[i])) return prev as T[];
  return Object.freeze(out) as T[];
}

function reuseEntrypoints(next: Record<string, Entrypoint>, prev: Record<string, Entrypoint>): Record<string, Entrypoint> {
  const out: Record<string, Entrypoint> = {};
  let same = Object.keys(next).length === Object.keys(prev).length;
  for (const name of Object.keys(next)) {
    const x = next[name] as Entrypoint;
    const p = Object.hasOwn(prev, name) ? prev[name] : undefined;
    if (p !== undefined && (p === x || deepEqual(p, x))) out[name] = p;
    else {
      out[name] = freezeDeep(x);
      same = false;
    }
  }
  if (same && Object.keys(prev).every((n, i) => Object.keys(out)[i] === n)) return prev;
  return Object.freeze(out);
}

// --- helpers

const routeId = (r: Route): string => r.id;
const vipKey = (v: VipEntry): string => v.key;
const routeIndex = new WeakMap<readonly Route[], Map<string, Route>>();
const vipIndex = new WeakMap<readonly VipEntry[], Map<string, VipEntry>>();

/**
 * The first element of `list` of each key, kept per list. Keys are not unique in every table (two
 * providers may name their routes alike): a key stands for its first element only, and a later element of
 * the same key goes as an object. Both ends hold lists equal in content and order, so the first element
 * of a key is the same content at both.
 */
function indexBy<T extends object>(
  list: readonly T[],
  cache: WeakMap<readonly T[], Map<string, T>>,
  key: (x: T) => string,
): Map<string, T> {
  let index = cache.get(list);
  if (index) return index;
  index = new Map();
  for (const x of list) {
    const k = key(x);
    if (!index.has(k)) index.set(k, x);
  }
  cache.set(list, index);
  return index;
}

/** Equal own fields, compared with ===: for objects of primitives (a VipEntry). */
function flatEqual(a: object, b: object): boolean {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (x[k] === undefined) continue;
    if (x[k] !== y[k]) return false;
    n++;
  }
  for (const k in y) if (y[k] !== undefined) n--;
  return n === 0;
}

/** Freeze `value` and everything in it (what is frozen already is taken as frozen through). */
function freezeDeep<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || Object.isFrozen(v)) continue;
    Object.freeze(v);
    for (const x of Object.values(v)) if (x !== null && typeof x === 'object' && !Object.isFrozen(x)) stack.push(x);
  }
  return value;
}

/** A service frozen as the aggregator freezes one: all of it but the endpoint objects. */
function freezeService(s: Service): Service {
  if (Object.isFrozen(s)) return s;
  Object.freeze(s.endpoints);
  freezeDeep(s.balance);
  freezeDeep(s.vips);
  freezeDeep(s.labels);
  if (s.health) freezeDeep(s.health);
  return Object.freeze(s);
}
