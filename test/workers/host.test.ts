/**
 * The control's side of the workers (src/workers/host.ts) and the leader's health verdicts: driven over a
 * fake supervisor channel. The leader's verdicts are handed to every other worker, a worker that starts is
 * handed the DOWN ones before its first table, and the kept verdicts follow the table: those of endpoints
 * or services that leave it go, so the map cannot outgrow the table. The planes' api questions go to the
 * leader.
 */
import t from 'tap';
import type { PorticoConfig } from '../../src/config/index.js';
import type { Endpoint, HealthCheck, RoutingTable, Service, TableChange } from '../../src/model/types.js';
import { ServiceMap } from '../../src/model/service-map.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { createRegistry } from '../../src/telemetry/metrics.js';
import { WorkerPlanes, type SupervisorChannel } from '../../src/workers/host.js';
import type { ControlToSupervisor, PlaneVerdict, SupervisorToControl, ToWorker } from '../../src/workers/messages.js';
import { SharedVerdicts } from '../../src/workers/verdicts.js';

const CHECK: HealthCheck = { httpPath: '/healthz', expectStatus: [200, 399], intervalMs: 1_000, timeoutMs: 500, rise: 2, fall: 2 };
const ep = (port: number): Endpoint => ({ address: '127.0.0.1', port, weight: 1, health: 'unknown', labels: {} });
const key = (port: number) => `127.0.0.1:${port}`;

function svc(name: string, ports: number[], health?: HealthCheck): Service {
  return {
    name,
    id: `${name}@test`,
    provider: 'test',
    framework: 'marathon',
    endpoints: ports.map(ep),
    balance: { algorithm: 'roundrobin' },
    vips: [],
    labels: {},
    ...(health && { health }),
  };
}

/** Tables one after the other, each with the change from the one before (by service identity). */
function tables() {
  let last: RoutingTable | undefined;
  return (services: Service[]): { table: RoutingTable; change: TableChange | undefined } => {
    const version = (last?.version ?? 0) + 1;
    const prev = last?.services;
    // Unchanged services keep their object, as the aggregator's tables do.
    const map = ServiceMap.from(
      services.map((s) => {
        const before = prev?.get(s.id);
        return [s.id, before && JSON.stringify(before) === JSON.stringify(s) ? before : s] as const;
      }),
    );
    const table: RoutingTable = {
      version,
      hash: `h${version}`,
      createdAt: new Date().toISOString(),
      services: map,
      routes: last?.routes ?? [],
      entrypoints: last?.entrypoints ?? {},
      vips: last?.vips ?? [],
      conflicts: [],
      warnings: [],
      sources: {},
    };
    const change: TableChange | undefined = last && {
      from: last.version,
      upserted: [...map.keys()].filter((id) => map.get(id) !== prev?.get(id)),
      removed: [...(prev?.keys() ?? [])].filter((id) => !map.has(id)),
      routes: false,
      entrypoints: false,
      vips: false,
    };
    last = table;
    return { table, change };
  };
}

/** A host on a fake channel: what it sends each worker, decoded, in order. */
function host() {
  const sent: ControlToSupervisor[] = [];
  let deliver: ((m: SupervisorToControl) => void) | undefined;
  const channel: SupervisorChannel = {
    send: (m) => sent.push(m),
    on: (_e, fn) => (deliver = fn),
    off: () => {},
  };
  const wp = new WorkerPlanes({
    channel,
    count: 2,
    init: { config: {} as PorticoConfig, logLevel: 'silent' },
    planes: ['l7', 'l4'],
    logger: silentLogger,
    registry: createRegistry(),
  });
  let read = 0;
  return {
    wp,
    receive: (m: SupervisorToControl) => deliver!(m),
    /** What was sent to worker `w` since the last call (broadcasts included). */
    drain(): Map<number, ToWorker[]> {
      const out = new Map<number, ToWorker[]>();
      const add = (w: number | 'all', m: ToWorker) => {
        for (const to of w === 'all' ? [0, 1] : [w]) out.set(to, [...(out.get(to) ?? []), m]);
      };
      for (const m of sent.slice(read)) {
        if (m.t === 'to-worker') add(m.w, m.msg);
        else if (m.t === 'to-worker-text') add(m.w, JSON.parse(m.text) as ToWorker);
        else if (m.t === 'to-workers') add('all', m.msg);
        else if (m.t === 'to-workers-text') add('all', JSON.parse(m.text) as ToWorker);
      }
      read = sent.length;
      return out;
    },
  };
}

const down = (plane: string, k: string, serviceId?: string): PlaneVerdict => ({
  plane,
  ...(serviceId && { serviceId }),
  key: k,
  up: false,
  reason: 'connect',
});
const kinds = (ms: ToWorker[] | undefined) => (ms ?? []).map((m) => (m.t === 'table' ? `table${m.whole ? ' whole' : ''}` : m.t));
const healthOf = (ms: ToWorker[] | undefined) =>
  (ms ?? [])
    .flatMap((m) => (m.t === 'health' ? m.verdicts : []))
    .map((v) => `${v.plane} ${v.serviceId ?? '-'} ${v.key} ${v.up ? 'up' : 'down'}`);

t.test('the leader’s verdicts go to the other workers; a worker that starts gets the DOWN ones before its first table', async (t) => {
  const h = host();
  t.teardown(() => h.wp.close());
  const next = tables();
  const v1 = next([svc('web', [9001, 9002], CHECK), svc('api', [9001, 9003]), svc('vip', [9004])]);
  h.wp.publish(v1.table);
  h.receive({ t: 'worker-up', w: 0, pid: 100 });
  h.receive({ t: 'worker-up', w: 1, pid: 101 });
  h.receive({ t: 'from-worker', w: 0, msg: { t: 'applied', version: 1, planes: [] } });
  h.receive({ t: 'from-worker', w: 1, msg: { t: 'applied', version: 1, planes: [] } });
  h.drain();

  h.receive({
    t: 'from-worker',
    w: 0,
    msg: {
      t: 'health',
      verdicts: [
        down('l7', key(9001), 'web@test'),
        down('l4', key(9004)),
        down('l7', key(9001), 'api@test'), // api has no check: not kept, not handed on
        down('l7', key(9999), 'web@test'), // not an endpoint of web
        down('l7', key(9001), 'gone@test'), // no such service
        down('l4', key(9999)), // no service lists it
      ],
    },
  });
  let out = h.drain();
  t.same(
    healthOf(out.get(1)),
    ['l7 web@test 127.0.0.1:9001 down', 'l4 - 127.0.0.1:9004 down'],
    'the follower gets the verdicts on table endpoints',
  );
  t.same(out.get(0), undefined, 'the leader is not sent its own');

  h.receive({ t: 'from-worker', w: 0, msg: { t: 'health', verdicts: [down('l7', key(9001), 'web@test')] } });
  t.same(h.drain().size, 0, 'a DOWN already known is not sent again');
  h.receive({ t: 'from-worker', w: 1, msg: { t: 'health', verdicts: [down('l7', key(9002), 'web@test')] } });
  t.same(h.drain().size, 0, 'a worker that does not probe is not listened to');

  // Worker 1 is replaced: the DOWN verdicts, then the whole table.
  h.receive({ t: 'worker-exit', w: 1, pid: 101, code: null, signal: 'SIGKILL' });
  h.receive({ t: 'worker-up', w: 1, pid: 102 });
  out = h.drain();
  t.same(kinds(out.get(1)), ['health', 'table whole'], 'verdicts first, so they are in place when the table creates the checks');
  t.same(healthOf(out.get(1)), ['l7 web@test 127.0.0.1:9001 down', 'l4 - 127.0.0.1:9004 down']);
  // So is the leader (it probes on from them).
  h.receive({ t: 'worker-exit', w: 0, pid: 100, code: null, signal: 'SIGKILL' });
  h.receive({ t: 'worker-up', w: 0, pid: 103 });
  t.same(healthOf(h.drain().get(0)), ['l7 web@test 127.0.0.1:9001 down', 'l4 - 127.0.0.1:9004 down'], 'a replacement leader too');
  // A worker that could not use the table it was sent gets both again (its "no table yet" ask waits while
  // the whole table is on its way: test/workers/host-spool.test.ts).
  h.receive({ t: 'from-worker', w: 1, msg: { t: 'want-table', have: 0, reason: 'the table could not be read' } });
  t.same(kinds(h.drain().get(1)), ['health', 'table whole']);

  // An UP verdict: dropped from the map, handed on.
  h.receive({ t: 'from-worker', w: 0, msg: { t: 'health', verdicts: [{ plane: 'l4', key: key(9004), up: true }] } });
  t.same(healthOf(h.drain().get(1)), ['l4 - 127.0.0.1:9004 up']);
  h.receive({ t: 'from-worker', w: 1, msg: { t: 'want-table', have: 0, reason: 'again' } });
  t.same(healthOf(h.drain().get(1)), ['l7 web@test 127.0.0.1:9001 down'], 'only the DOWN ones are replayed');
});

t.test('kept verdicts follow the table: endpoints and services that leave it take theirs along', async (t) => {
  const v = new SharedVerdicts();
  const next = tables();
  let step = next([svc('web', [9001, 9002], CHECK), svc('api', [9001, 9003], CHECK), svc('vip', [9004]), svc('db', [9005])]);
  v.retain(step.table, step.change);
  for (const r of [
    down('l7', key(9001), 'web@test'),
    down('l7', key(9002), 'web@test'),
    down('l7', key(9001), 'api@test'),
    down('l4', key(9004)),
    down('l4', key(9005)),
    down('l4', key(9001)),
  ])
    t.ok(v.record(r), `kept: ${r.plane} ${r.serviceId ?? '-'} ${r.key}`);
  t.equal(v.size, 6);
  const replay = () =>
    v
      .replay()
      .map((r) => `${r.plane} ${r.serviceId ?? '-'} ${r.key}`)
      .sort();

  // web loses 9001: its verdict goes; api's on 9001 and the per-endpoint one (api still lists it) stay.
  step = next([svc('web', [9002], CHECK), svc('api', [9001, 9003], CHECK), svc('vip', [9004]), svc('db', [9005])]);
  v.retain(step.table, step.change);
  t.same(replay(), [
    'l4 - 127.0.0.1:9001',
    'l4 - 127.0.0.1:9004',
    'l4 - 127.0.0.1:9005',
    'l7 api@test 127.0.0.1:9001',
    'l7 web@test 127.0.0.1:9002',
  ]);

  // 9004 moves from vip to db in one change: still listed, kept. api is gone: its verdict goes, and 9001 is
  // listed by no service any more: the per-endpoint one goes too.
  step = next([svc('web', [9002], CHECK), svc('db', [9005, 9004])]);
  v.retain(step.table, step.change);
  t.same(replay(), ['l4 - 127.0.0.1:9004', 'l4 - 127.0.0.1:9005', 'l7 web@test 127.0.0.1:9002']);

  // web's check is removed: the endpoint stays, its verdict does not (a check added again starts UP).
  step = next([svc('web', [9002]), svc('db', [9005, 9004])]);
  v.retain(step.table, step.change);
  t.same(replay(), ['l4 - 127.0.0.1:9004', 'l4 - 127.0.0.1:9005']);
  t.notOk(v.record(down('l7', key(9002), 'web@test')), 'and a verdict for it is not kept');

  // A table without a change from the one before (a whole one): everything looked at.
  step = next([svc('db', [9005])]);
  v.retain(step.table);
  t.same(replay(), ['l4 - 127.0.0.1:9005']);
  // A change from another version: the same.
  step = next([svc('db', [9006])]);
  v.retain(step.table, { ...step.change!, from: 1 });
  t.same(replay(), []);
  t.equal(v.size, 0, 'nothing left');

  // Bounded: verdicts for endpoints the table does not have are never kept.
  for (let p = 10_000; p < 11_000; p++) v.record(down('l4', key(p)));
  t.equal(v.size, 0);
  t.ok(v.record(down('l4', key(9006))));
  t.equal(v.size, 1);
});

t.test('a verdict on a check the leader has dropped since is not taken: the endpoint came back UP elsewhere', async (t) => {
  const h = host();
  t.teardown(() => h.wp.close());
  const next = tables();
  const applied = (w: number, version: number) => h.receive({ t: 'from-worker', w, msg: { t: 'applied', version, planes: [] } });
  const found = (v: PlaneVerdict) => h.receive({ t: 'from-worker', w: 0, msg: { t: 'health', verdicts: [v] } });
  h.wp.publish(next([svc('web', [9001, 9002], CHECK)]).table);
  h.receive({ t: 'worker-up', w: 0, pid: 100 });
  h.receive({ t: 'worker-up', w: 1, pid: 101 });
  applied(0, 1);
  applied(1, 1);
  // 9001 leaves web and comes back (a task restarted on the same port) before the leader applies either table.
  const v2 = next([svc('web', [9002], CHECK)]);
  h.wp.publish(v2.table, v2.change);
  const v3 = next([svc('web', [9001, 9002], CHECK)]);
  h.wp.publish(v3.table, v3.change);
  h.drain();
  found(down('l7', key(9001), 'web@test'));
  t.same(h.drain().size, 0, 'found on the check of table 1, which the leader drops with table 2: not taken');
  applied(0, 2);
  applied(0, 3);
  found(down('l7', key(9001), 'web@test'));
  t.same(
    healthOf(h.drain().get(1)),
    ['l7 web@test 127.0.0.1:9001 down'],
    'once the leader applies table 3, its verdicts are about the new check',
  );
  // The same when web's check is removed and added back.
  const v4 = next([svc('web', [9001, 9002])]);
  h.wp.publish(v4.table, v4.change);
  const v5 = next([svc('web', [9001, 9002], CHECK)]);
  h.wp.publish(v5.table, v5.change);
  h.drain();
  found(down('l7', key(9002), 'web@test'));
  t.same(h.drain().size, 0, 'a check removed and added back: an old verdict is not taken');
  // A replacement leader starts from the table it is handed: nothing before it is in question.
  h.receive({ t: 'worker-exit', w: 0, pid: 100, code: null, signal: 'SIGKILL' });
  h.receive({ t: 'worker-up', w: 0, pid: 102 });
  h.drain();
  found(down('l7', key(9002), 'web@test'));
  t.same(healthOf(h.drain().get(1)), ['l7 web@test 127.0.0.1:9002 down']);
});

t.test('the planes’ api questions go to the leader while it is live', async (t) => {
  const h = host();
  t.teardown(() => h.wp.close());
  const next = tables();
  h.wp.publish(next([svc('web', [9001])]).table);
  h.receive({ t: 'worker-up', w: 1, pid: 201 });
  h.receive({ t: 'from-worker', w: 1, msg: { t: 'applied', version: 1, planes: [] } });
  h.receive({ t: 'worker-up', w: 0, pid: 200 });
  h.receive({ t: 'from-worker', w: 0, msg: { t: 'applied', version: 1, planes: [] } });
  h.drain();
  const asked = () => [...h.drain()].flatMap(([w, ms]) => ms.filter((m) => m.t === 'rpc').map(() => w));
  void h.wp.query('l4', 'describe', []).catch(() => {});
  t.same(asked(), [0], 'the leader answers, though worker 1 started first');
  h.receive({ t: 'worker-exit', w: 0, pid: 200, code: null, signal: 'SIGKILL' });
  void h.wp.query('l4', 'describe', []).catch(() => {});
  t.same(asked(), [1], 'without it, another worker answers');
});
