/**
 * The table wire against the tables the control serves: a seeded random history through the real
 * Aggregator and TablePipeline (a VIP stage that makes its entries anew as the real one does), every
 * served version encoded with the control's previous table, sent through JSON as IPC does and decoded on a
 * "worker" chain. Each decoded table must be the control's (content, hash, version), frozen, and share with
 * the worker's previous table everything the control's shares with its previous one; the change handed to
 * the planes must name exactly what differs. Then: stale changes, resync after a control restart, and the
 * size of one endpoint change at 10,000 services.
 */
import t, { type Test } from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import { TablePipeline, type TableStage } from '../../src/aggregator/pipeline.js';
import { canonicalJson } from '../../src/model/canonical.js';
import type { Endpoint, RoutingTable, Snapshot, SnapshotDelta, TableChange, VipEntry } from '../../src/model/types.js';
import { decodeTable, encodeTable, identityChange, WireError, type TableMessage } from '../../src/workers/wire.js';
import { bigSnapshot, endpoint, entrypoint, service, snapshot } from '../helpers/snapshot.js';

type LocalService = Snapshot['services'][string];
type SnapRoute = Snapshot['routes'][number] & { id: string };

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const NAMES = ['web', 'api', 'db', 'cache', 'auth', 'mail'];
const HOSTS = ['a.test', 'b.test', 'c.test', '*'];

/** What IPC does to a message. */
const trip = (msg: TableMessage): TableMessage => JSON.parse(JSON.stringify(msg)) as TableMessage;

/** A table's content as canonical text (services as the record JSON shows). */
const text = (x: RoutingTable): string => canonicalJson({ ...x, services: x.services.toJSON() });

/**
 * A stage that gives named VIPs an address as the real VIP stage does: the same array while the VIPs and
 * addresses are the same, else every entry made anew. `move()` changes the addresses without a table change.
 */
function vipStage(): TableStage & { move(): void } {
  let epoch = 0;
  let changed: (() => void) | undefined;
  let last: { in: readonly VipEntry[]; out: readonly VipEntry[]; epoch: number } | undefined;
  return {
    name: 'vips',
    apply: (table) => {
      if (last && last.in === table.vips && last.epoch === epoch) return Object.freeze({ ...table, vips: last.out as VipEntry[] });
      const vips = table.vips.map((v) => {
        const out: VipEntry = { ...v };
        if (v.address !== undefined) out.ip = v.address;
        else if (v.name !== undefined) out.ip = `11.0.${epoch % 2}.${NAMES.indexOf(v.name) + 1}`;
        return Object.freeze(out);
      });
      const same = last && last.out.length === vips.length && vips.every((v, i) => canonicalJson(v) === canonicalJson(last?.out[i]));
      const out = same && last ? last.out : Object.freeze(vips);
      last = { in: table.vips, out, epoch };
      return Object.freeze({ ...table, vips: out as VipEntry[] });
    },
    fingerprint: (table) => table.vips.map((v) => v.ip ?? '').join(','),
    watch: (cb) => {
      changed = cb;
      return () => (changed = undefined);
    },
    move() {
      epoch++;
      changed?.();
    },
  };
}

function randomEndpoint(r: () => number): Endpoint {
  return endpoint(`10.0.0.${1 + Math.floor(r() * 4)}`, 8000 + Math.floor(r() * 3), {
    health: r() < 0.8 ? 'healthy' : 'unhealthy',
    labels: r() < 0.3 ? { a: '2', z: '1' } : {},
  });
}

function randomService(r: () => number): LocalService {
  const endpoints = Array.from({ length: Math.floor(r() * 3) }, () => randomEndpoint(r));
  const vips: LocalService['vips'] = [];
  if (r() < 0.4) vips.push({ name: NAMES[Math.floor(r() * 3)] as string, port: 80, protocol: 'tcp' });
  if (r() < 0.15) vips.push({ address: `10.9.0.${1 + Math.floor(r() * 2)}`, port: 53, protocol: 'udp' });
  return service(endpoints, { framework: r() < 0.85 ? 'marathon' : 'other', vips });
}

function randomRoute(r: () => number, provider: string, seq: number): SnapRoute {
  // Some ids are shared between providers: a table can hold two routes of one id.
  const id = r() < 0.2 ? `shared/${Math.floor(r() * 3)}` : `${provider}/r${seq}`;
  return {
    id,
    entrypoint: r() < 0.85 ? 'web' : 'missing',
    host: HOSTS[Math.floor(r() * HOSTS.length)] as string,
    path: r() < 0.5 ? '/' : '/api',
    pathMatch: 'prefix',
    service: NAMES[Math.floor(r() * NAMES.length)] as string,
  };
}

interface Served {
  table: RoutingTable;
  previous: RoutingTable | undefined;
  change: TableChange | undefined;
}

/** Whether `table` holds two routes of one id (the wire sends the later ones whole). */
function duplicateIds(table: RoutingTable): boolean {
  return new Set(table.routes.map((r) => r.id)).size < table.routes.length;
}

t.test('a random history: every decoded table is the control’s, shares what it shares, and the change names what differs', async (t) => {
  const counts = { change: 0, identity: 0, resync: 0, whole: 0, duplicateIds: 0, vipRefs: 0, routeRefs: 0 };
  for (const seed of [1, 2, 3, 4]) {
    const r = rng(seed);
    const aggregator = new Aggregator({ debounceMs: 0 });
    const stage = vipStage();
    const pipeline = new TablePipeline({ aggregator, stages: [stage] });
    t.teardown(() => {
      pipeline.close();
      aggregator.close();
    });
    const served: Served[] = [];
    pipeline.subscribe((table, previous, change) => served.push({ table, previous, change }));

    // The worker starts on the control's current table, whole.
    let worker = decodeTable(undefined, trip(encodeTable(pipeline.current(), undefined, undefined))).table;
    t.equal(text(worker), text(pipeline.current()));

    const knowledge = new Map<string, { priority: number; services: Record<string, LocalService>; routes: Map<string, SnapRoute> }>();
    for (const [name, priority] of [
      ['file', 100],
      ['marathon', 50],
      ['consul', 50],
    ] as const)
      knowledge.set(name, { priority, services: {}, routes: new Map() });
    let seq = 0;

    for (let step = 0; step < 200; step++) {
      const where = `seed ${seed} step ${step}`;
      const provider = [...knowledge.keys()][Math.floor(r() * knowledge.size)] as string;
      const k = knowledge.get(provider)!;
      const delta: SnapshotDelta = {};
      const kind = r();
      if (kind < 0.4) {
        const name = NAMES[Math.floor(r() * NAMES.length)] as string;
        if (r() < 0.25 && k.services[name]) {
          delete k.services[name];
          delta.remove = [name];
        } else {
          k.services[name] = randomService(r);
          delta.upsert = { [name]: k.services[name] };
        }
      } else if (kind < 0.65) {
        if (r() < 0.3 && k.routes.size) {
          const id = [...k.routes.keys()][Math.floor(r() * k.routes.size)] as string;
          k.routes.delete(id);
          delta.removeRoutes = [id];
        } else {
          const rt = randomRoute(r, provider, seq++);
          k.routes.set(rt.id, rt);
          delta.upsertRoutes = [rt];
        }
      } else if (kind < 0.75) {
        delta.entrypoints =
          r() < 0.7
            ? { web: entrypoint('web', `127.0.0.1:${8000 + Math.floor(r() * 2)}`), admin: entrypoint('admin', '127.0.0.1:9000') }
            : {};
      } else if (kind < 0.82) {
        delta.warnings = Array.from({ length: Math.floor(r() * 3) }, (_, i) => ({ subject: `x${i}`, message: `w${Math.floor(r() * 2)}` }));
      } else if (kind < 0.87) {
        k.priority = 40 + Math.floor(r() * 30); // reorders the decision: the next table comes without a change
      } else if (kind < 0.92) {
        stage.move(); // a stage-only change: served without a change
      }
      aggregator.change(provider, k.priority, delta);
      await pipeline.flush();
      await pipeline.settled();

      for (const { table, previous, change } of served.splice(0)) {
        if (previous === undefined || previous.version !== worker.version) {
          t.fail(`${where}: the worker serves ${worker.version}, the control's previous is ${previous?.version}`);
          return;
        }
        if (duplicateIds(table)) counts.duplicateIds++;
        // How the control sends it: mostly as it comes; a table without a change sometimes with one made by
        // identity; sometimes whole, as a restarted control's first table.
        const how = r() < 0.1 ? 'resync' : change === undefined ? (r() < 0.5 ? 'identity' : 'whole') : 'change';
        const given = how === 'change' ? change : how === 'identity' ? identityChange(table, previous) : undefined;
        const sent = encodeTable(table, how === 'resync' ? undefined : previous, given);
        if (given && sent.whole) t.fail(`${where}: a change was sent whole`);
        if (!sent.whole) {
          counts.vipRefs += (sent.vips ?? []).filter((v) => typeof v === 'string').length;
          counts.routeRefs += (sent.routes ?? []).filter((v) => typeof v === 'string').length;
        }
        counts[how]++;
        const prev = worker;
        const got = decodeTable(prev, trip(sent));
        worker = got.table;
        if (!check(t, where, table, previous, prev, got.table, got.change, given)) return;
      }
    }
  }
  t.ok(counts.change > 300 && counts.identity > 5 && counts.resync > 30 && counts.whole > 5, `every path taken: ${JSON.stringify(counts)}`);
  t.ok(counts.duplicateIds > 0 && counts.vipRefs > 0 && counts.routeRefs > 0, 'duplicate route ids, VIP and route references occurred');
});

/**
 * One decoded table against the control's. `sent` is the control's change when the message was one (the
 * decoded change must be it); else (whole, resync) the decoded change must name exactly what differs.
 */
function check(
  t: Test,
  where: string,
  ctl: RoutingTable,
  ctlPrev: RoutingTable,
  wrkPrev: RoutingTable,
  wrk: RoutingTable,
  change: TableChange | undefined,
  sent: TableChange | undefined,
): boolean {
  const fail = (what: string): false => {
    t.fail(`${where}: ${what}`);
    return false;
  };
  if (text(wrk) !== text(ctl)) {
    t.same(JSON.parse(text(wrk)), JSON.parse(text(ctl)), `${where}: content`);
    return false;
  }
  if (!change) return fail('no change for the planes');
  if (change.from !== wrkPrev.version) return fail('the change is not from the served version');

  // Frozen as the aggregator's tables are.
  for (const part of [wrk, wrk.routes, wrk.vips, wrk.entrypoints, wrk.conflicts, wrk.warnings, wrk.sources, ...wrk.routes, ...wrk.vips])
    if (!Object.isFrozen(part)) return fail('a part is not frozen');
  for (const s of wrk.services.values())
    if (!Object.isFrozen(s) || !Object.isFrozen(s.endpoints) || !Object.isFrozen(s.vips)) return fail(`${s.id} not frozen`);

  // What the control shares with its previous table, the worker shares with its own.
  const ids = new Set([...ctl.services.keys(), ...ctlPrev.services.keys()]);
  for (const id of ids)
    if (ctl.services.get(id) === ctlPrev.services.get(id) && wrk.services.get(id) !== wrkPrev.services.get(id))
      return fail(`${id} not shared`);
  for (const part of ['routes', 'vips', 'entrypoints', 'conflicts', 'warnings', 'sources'] as const)
    if (ctl[part] === ctlPrev[part] && wrk[part] !== wrkPrev[part]) return fail(`${part} not shared`);
  // Routes: those the first of their id (a later one of an id goes whole).
  for (const [i, x] of ctl.routes.entries()) {
    const j = ctlPrev.routes.indexOf(x);
    const first = ctlPrev.routes.findIndex((r) => r.id === x.id) === j;
    if (j >= 0 && first && wrk.routes[i] !== wrkPrev.routes[j]) return fail(`route ${x.id} not shared`);
  }
  for (const [i, x] of ctl.vips.entries()) {
    const j = ctlPrev.vips.indexOf(x);
    if (j >= 0 && wrk.vips[i] !== wrkPrev.vips[j]) return fail(`VIP ${x.key} not shared`);
  }
  for (const [name, ep] of Object.entries(ctl.entrypoints))
    if (ctlPrev.entrypoints[name] === ep && wrk.entrypoints[name] !== wrkPrev.entrypoints[name])
      return fail(`entrypoint ${name} not shared`);

  // The planes' contract: what the change does not name is the previous table's.
  const named = new Set([...change.upserted, ...change.removed]);
  for (const id of new Set([...wrk.services.keys(), ...wrkPrev.services.keys()]))
    if (!named.has(id) && wrk.services.get(id) !== wrkPrev.services.get(id)) return fail(`${id} changed unnamed`);
  for (const id of change.removed) if (wrk.services.has(id)) return fail(`${id} named removed but present`);
  if (!change.routes && wrk.routes !== wrkPrev.routes) return fail('routes changed unflagged');
  if (!change.vips && wrk.vips !== wrkPrev.vips) return fail('vips changed unflagged');
  if (!change.entrypoints && wrk.entrypoints !== wrkPrev.entrypoints) return fail('entrypoints changed unflagged');

  if (sent) {
    // A change sent as such reaches the planes as the control's planes get it.
    const want = {
      ...sent,
      routes: ctl.routes !== ctlPrev.routes,
      vips: ctl.vips !== ctlPrev.vips,
      entrypoints: ctl.entrypoints !== ctlPrev.entrypoints,
    };
    if (JSON.stringify(change) !== JSON.stringify(want)) {
      t.same(change, want, `${where}: the change`);
      return false;
    }
  } else {
    // Resync: exactly what differs in content.
    const same = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b);
    const upserted = [...ctl.services.keys()].filter((id) => !same(ctl.services.get(id), wrkPrev.services.get(id)));
    const removed = [...wrkPrev.services.keys()].filter((id) => !ctl.services.has(id));
    const want = {
      from: wrkPrev.version,
      upserted,
      removed,
      routes: !same(ctl.routes, wrkPrev.routes),
      entrypoints: !same(ctl.entrypoints, wrkPrev.entrypoints),
      vips: !same(ctl.vips, wrkPrev.vips),
    };
    if (JSON.stringify(change) !== JSON.stringify(want)) {
      t.same(change, want, `${where}: the resync change`);
      return false;
    }
    for (const id of wrk.services.keys())
      if (!named.has(id) && wrk.services.get(id) !== wrkPrev.services.get(id)) return fail(`${id} not reused`);
  }
  return true;
}

function twoProviders(port: number, extraRoute = false): Snapshot[] {
  const routes: Snapshot['routes'] = [
    { id: 'r1', entrypoint: 'web', host: 'a.test', path: '/', pathMatch: 'prefix', service: 'web' },
    { id: 'r0', entrypoint: 'web', host: 'd.test', path: '/', pathMatch: 'prefix', service: 'db' },
  ];
  if (extraRoute) routes.push({ id: 'r2', entrypoint: 'web', host: 'b.test', path: '/', pathMatch: 'prefix', service: 'api' });
  return [
    snapshot('file', {
      entrypoints: { web: entrypoint('web', '127.0.0.1:8080') },
      services: {
        web: service([endpoint('10.0.0.1', port)], { name: 'web', vips: [{ name: 'web', port: 80, protocol: 'tcp' }] }),
        api: service([endpoint('10.0.0.2', 80)], { name: 'api' }),
        db: service([endpoint('10.0.0.3', 5432)], { name: 'db' }),
      },
      routes,
    }),
    // The same route id from another provider, on another key: both are served.
    snapshot('consul', {
      services: { cache: service([endpoint('10.0.0.4', 6379)], { name: 'cache' }) },
      routes: [{ id: 'r1', entrypoint: 'web', host: 'c.test', path: '/', pathMatch: 'prefix', service: 'cache' }],
    }),
  ];
}

async function control(snaps: Snapshot[]): Promise<RoutingTable> {
  const aggregator = new Aggregator({ debounceMs: 0 });
  for (const s of snaps) aggregator.update(s.provider, s.provider === 'file' ? 100 : 50, s);
  const table = aggregator.flush();
  aggregator.close();
  return table;
}

t.test('a change that does not start from the served table is a WireError; so is a message that names what it lacks', async (t) => {
  const a = await control(twoProviders(80));
  const agg = new Aggregator({ debounceMs: 0 });
  t.teardown(() => agg.close());
  const changes: Array<{ table: RoutingTable; previous?: RoutingTable; change?: TableChange }> = [];
  agg.subscribe((table, previous, change) => changes.push({ table, previous, change }));
  const [file, consul] = twoProviders(80) as [Snapshot, Snapshot];
  agg.update('file', 100, file);
  agg.update('consul', 50, consul);
  const v1 = agg.flush();
  agg.change('file', 100, {
    upsert: { web: service([endpoint('10.0.0.1', 81)], { name: 'web', vips: [{ name: 'web', port: 80, protocol: 'tcp' }] }) },
  });
  const v2 = agg.flush();
  const last = changes.at(-1)!;
  t.equal(last.table, v2);
  const msg = trip(encodeTable(v2, v1, last.change));
  t.equal(msg.whole, false, 'a change');
  t.ok(JSON.stringify(msg).length < 1500, 'small');

  const reason = (fn: () => unknown): string | undefined => {
    try {
      fn();
    } catch (err) {
      return err instanceof WireError ? err.reason : `not a WireError: ${String(err)}`;
    }
    return undefined;
  };
  const stale = (fn: () => unknown, why: string) => t.equal(reason(fn), 'stale', why);
  stale(() => decodeTable(undefined, msg), 'no table served');
  stale(() => decodeTable({ ...v1, version: v1.version + 1 }, msg), 'another version served');
  stale(() => decodeTable({ ...v1, hash: 'other' }, msg), 'the same version number with other content (another control’s numbering)');
  t.equal(
    decodeTable(decodeTable(undefined, trip(encodeTable(v1, undefined, undefined))).table, msg).table.hash,
    v2.hash,
    'from v1 it decodes',
  );

  const bad = (m: unknown, why: string) =>
    t.equal(
      reason(() => decodeTable(v1, m as TableMessage)),
      'malformed',
      why,
    );
  bad({ t: 'certs' }, 'not a table');
  bad({ ...msg, routes: ['nope'] }, 'a route id the previous table lacks');
  bad({ ...msg, warnings: [7] }, 'a warning index the previous table lacks');
  bad({ ...msg, entrypoints: { web: 'nope' } }, 'an entrypoint the previous table lacks');
  t.equal(a.routes.filter((r) => r.id === 'r1').length, 2, 'the table holds two routes of one id');
  const routes = (encodeTable(v2, v1, { ...last.change!, routes: true }) as { routes?: unknown }).routes;
  t.equal(routes, undefined, 'routes are sent only when they are not the previous table’s');
});

t.test('routes of one id from two providers: the first goes by id, the later one whole', async (t) => {
  const v1 = await control(twoProviders(80));
  const v2 = await control(twoProviders(80, true));
  t.same(
    v2.routes.map((r) => `${r.id} ${r.host}`),
    ['r1 a.test', 'r2 b.test', 'r1 c.test', 'r0 d.test'],
  );
  // The previous table: v2's own routes but r2 (so they are shared by identity), sent whole to the worker.
  const prev: RoutingTable = Object.freeze({ ...v1, routes: v2.routes.filter((r) => r.id !== 'r2') });
  const worker = decodeTable(undefined, trip(encodeTable(prev, undefined, undefined))).table;
  const change: TableChange = { from: prev.version, upserted: [], removed: [], routes: true, entrypoints: false, vips: false };
  const next: RoutingTable = { ...prev, version: prev.version + 1, hash: 'next', routes: v2.routes };
  const msg = trip(encodeTable(next, prev, change));
  t.equal(msg.whole, false);
  t.same(
    (msg as { routes: Array<string | { id: string }> }).routes.map((x) => (typeof x === 'string' ? x : `{${x.id}}`)),
    ['r1', '{r2}', '{r1}', 'r0'],
    'the first r1 and r0 by id; the second r1 and the new r2 as objects',
  );
  const got = decodeTable(worker, msg);
  t.equal(text(got.table), text(next));
  t.equal(got.table.routes[0], worker.routes[0], 'the first r1 is the served object');
  t.equal(got.table.routes[3], worker.routes[2], 'r0 is the served object');
  t.not(got.table.routes[2], worker.routes[1], 'the second r1 was sent whole');
  t.equal(got.table.routes[2]?.host, 'c.test');
  t.equal(got.change?.routes, true);
});

t.test('resync: a whole table after another one is a change naming only what differs, equal parts the served ones', async (t) => {
  const a = await control(twoProviders(80));
  // A restarted control: its own numbering, web's endpoint moved, a route more, db gone.
  const snaps = twoProviders(81, true);
  delete (snaps[0] as Snapshot).services.db;
  const b = await control(snaps);
  t.equal(b.version, a.version, 'the same version number, other content');
  const worker = decodeTable(undefined, trip(encodeTable(a, undefined, undefined))).table;
  const got = decodeTable(worker, trip(encodeTable(b, undefined, undefined)));
  t.equal(text(got.table), text(b), 'the table is the new control’s');
  t.same(got.change, { from: a.version, upserted: ['web@file'], removed: ['db@file'], routes: true, entrypoints: false, vips: false });
  t.equal(got.table.services.get('api@file'), worker.services.get('api@file'), 'an equal service is the served object');
  t.equal(got.table.services.get('cache@consul'), worker.services.get('cache@consul'));
  t.equal(got.table.vips, worker.vips, 'equal VIPs are the served list');
  t.equal(got.table.entrypoints, worker.entrypoints, 'equal entrypoints are the served record');
  for (const r of got.table.routes) if (r.id !== 'r2') t.ok(worker.routes.includes(r), `route ${r.id} ${r.host} is the served object`);
  t.ok(Object.isFrozen(got.table) && Object.isFrozen(got.table.routes) && Object.isFrozen(got.table.services.get('web@file')), 'frozen');

  // The same content again (the same hash): everything is the served table's.
  const same = decodeTable(got.table, trip(encodeTable({ ...b, version: 7, createdAt: 'later' }, undefined, undefined)));
  t.same(same.change, { from: b.version, upserted: [], removed: [], routes: false, entrypoints: false, vips: false });
  t.equal(same.table.version, 7);
  t.equal(same.table.createdAt, 'later');
  t.equal(same.table.services, got.table.services);
  t.equal(same.table.routes, got.table.routes);
});

t.test('one endpoint change at 10,000 services / 100,000 endpoints is a message of a few KB', async (t) => {
  const started = Date.now();
  const aggregator = new Aggregator({ debounceMs: 0 });
  t.teardown(() => aggregator.close());
  const seen: Array<{ table: RoutingTable; previous?: RoutingTable; change?: TableChange }> = [];
  aggregator.subscribe((table, previous, change) => seen.push({ table, previous, change }));
  const big = bigSnapshot('file', 10_000, 10);
  aggregator.update('file', 100, big);
  const v1 = aggregator.flush();
  const first = trip(encodeTable(v1, undefined, undefined));
  const worker = decodeTable(undefined, first).table;
  t.equal(worker.services.size, 10_000);

  const app = big.services.app42 as LocalService;
  const endpoints = app.endpoints.map((e, i) => (i === 3 ? { ...e, health: 'draining' as const, weight: 0 } : e));
  aggregator.change('file', 100, { upsert: { app42: { ...app, endpoints } } });
  const v2 = aggregator.flush();
  const { change } = seen.at(-1)!;
  const msg = encodeTable(v2, v1, change);
  const bytes = Buffer.byteLength(JSON.stringify(msg));
  t.equal(msg.whole, false);
  t.ok(bytes < 20_000, `${bytes} bytes`);
  const got = decodeTable(worker, trip(msg));
  t.same(got.change, { from: v1.version, upserted: ['app42@file'], removed: [], routes: false, entrypoints: false, vips: false });
  t.equal(got.table.services.get('app42@file')?.endpoints[3]?.health, 'draining');
  t.equal(got.table.services.get('app41@file'), worker.services.get('app41@file'));
  t.equal(got.table.routes, worker.routes);
  t.equal(got.table.hash, v2.hash);
  t.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
});
