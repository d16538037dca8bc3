/**
 * Zone patches (plane.apply with a TableChange) against whole-table compiles. Tables come from the real
 * Aggregator (snapshots, deltas, providers leaving and coming back, name conflicts) through the real VIP
 * allocator on an embedded store; after every step the patched plane must serve exactly what a fresh
 * plane started on the same table serves: every precompiled answer byte for byte (SOA serials aside),
 * the lookup api's rows, and answers over real UDP sockets. The patched plane is queried at every step,
 * so a cached answer a patch failed to drop shows. Also: a patch keeps every compiled part of the
 * services it did not touch (the same objects) and drops exactly the names whose records changed; a
 * change that does not start from the served table is compiled whole; held providers behave as with
 * whole compiles.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import { createDnsPlane, type DnsOptions, type DnsPlane } from '../../src/dns/index.js';
import { canonicalLabel, emitRecords, reverseOf, type NameInput } from '../../src/dns/names.js';
import { keyOf, SLOT, type Zone, type ZoneNode } from '../../src/dns/zone.js';
import type { DnsConfig } from '../../src/config/types.js';
import type { Endpoint, HealthState, RoutingTable, Snapshot, SnapshotDelta, TableChange, Vip } from '../../src/model/types.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { createRegistry } from '../../src/telemetry/metrics.js';
import { VipAllocator } from '../../src/vips/index.js';
import { bigSnapshot } from '../helpers/snapshot.js';
import { baseConfig, decode, header, query, Rng, seedFromEnv, T, UdpClient } from './helpers.js';

const seed = seedFromEnv();
t.comment(`seed ${seed} (PORTICO_SEED=${seed} to reproduce)`);

const DOMAINS = ['corp.example', 'prod.mesos'];
const ZONES = ['mesos', ...DOMAINS];
const SELF = '127.0.0.1';

type Local = Snapshot['services'][string];

// ---- the world the random steps change

const HEALTH: HealthState[] = ['healthy', 'healthy', 'unknown', 'unhealthy', 'draining'];
const FRAMEWORKS = ['marathon', 'marathon', 'my.framework', 'slave', 'a.b'];
/** A task label that is also the canonical label of task `web` with id `t1`: names that collide on purpose. */
const WEB_T1 = canonicalLabel('web', { address: '0.0.0.0', port: 0, weight: 1, health: 'healthy', labels: {}, taskId: 't1' }, '');
/** Long labels: two that share one SRV name (62 bytes), two that share canonical names (57 bytes) but not SRV names. */
const LONG = ['x'.repeat(63), `${'x'.repeat(62)}y`, `${'x'.repeat(57)}aaaaaa`, `${'x'.repeat(57)}bbbbbb`];
const TASKS = ['web', 'db', 'leader', WEB_T1, ...LONG];
const ADDRESSES = [...Array.from({ length: 14 }, (_, i) => `10.0.${i % 3}.${i + 1}`), 'fd00::1', 'fd00::2', 'fd00::3'];
const AGENTS = ['192.168.0.1', '192.168.0.2', '192.168.0.3', 'fd00::a1'];
const NAMES = ['web', 'db', 'api', 'cache', 'queue', 'auth', 'search'];
const VIP_NAMES = ['web', 'grp.web', 'db', 'Front_End'];

function endpoints(rng: Rng): Endpoint[] {
  const out: Endpoint[] = [];
  const used = new Set<number>();
  const n = rng.int(5);
  for (let j = 0; j < n; j++) {
    const a = rng.int(ADDRESSES.length);
    if (used.has(a)) continue;
    used.add(a);
    out.push(endpoint(rng, ADDRESSES[a]!));
  }
  return out;
}

function endpoint(rng: Rng, address: string): Endpoint {
  const e: Endpoint = {
    address,
    port: 80 + rng.int(3),
    weight: [0, 1, 1, 2, 3][rng.int(5)]!,
    health: HEALTH[rng.int(HEALTH.length)]!,
    labels: {},
  };
  if (rng.int(3) === 0) e.task = TASKS[rng.int(TASKS.length)]!;
  const id = rng.int(3);
  if (id === 0) e.taskId = ['t1', 't2'][rng.int(2)]!;
  else if (id === 1) e.taskId = `task-${rng.int(1_000_000)}`;
  const agent = rng.int(4);
  if (agent === 0) e.agentAddress = AGENTS[rng.int(AGENTS.length)]!;
  else if (agent === 1) e.agentAddress = address; // host-networked, said explicitly
  return e;
}

function vips(rng: Rng): Vip[] {
  if (rng.int(2) === 0) return [];
  return [{ name: VIP_NAMES[rng.int(VIP_NAMES.length)]!, port: 80 + rng.int(2), protocol: 'tcp' }];
}

function randomService(rng: Rng, name: string): Local {
  return {
    name,
    framework: FRAMEWORKS[rng.int(FRAMEWORKS.length)]!,
    endpoints: endpoints(rng),
    balance: { algorithm: 'roundrobin' },
    vips: vips(rng),
    labels: {},
  };
}

/** One endpoint of `s` changed (or added, or gone). */
function touchEndpoint(rng: Rng, s: Local): Local {
  const eps = [...s.endpoints];
  const k = rng.int(eps.length + 1);
  const e = eps[k];
  if (e === undefined) {
    const free = ADDRESSES.filter((a) => !eps.some((x) => x.address === a));
    if (free.length > 0) eps.push(endpoint(rng, free[rng.int(free.length)]!));
  } else {
    switch (rng.int(6)) {
      case 0:
        eps[k] = { ...e, health: HEALTH[rng.int(HEALTH.length)]! };
        break;
      case 1:
        eps[k] = { ...e, weight: rng.int(4) };
        break;
      case 2: {
        const free = ADDRESSES.filter((a) => !eps.some((x) => x.address === a));
        if (free.length > 0) eps[k] = { ...e, address: free[rng.int(free.length)]! };
        break;
      }
      case 3:
        eps[k] = { ...e, port: 80 + rng.int(3) };
        break;
      case 4:
        eps.splice(k, 1);
        break;
      default:
        eps[k] = endpoint(rng, e.address);
    }
  }
  return { ...s, endpoints: eps };
}

// ---- planes and tables

interface World {
  agg: Aggregator;
  vips: VipAllocator;
  /** The served table of each step and its change, in order. */
  next(): Promise<{ table: RoutingTable; change: TableChange | undefined } | undefined>;
}

async function world(t: Test): Promise<World> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-dnspatch-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  const store = await EmbeddedStore.open(dir);
  t.teardown(() => store.close().catch(() => undefined));
  const agg = new Aggregator({ debounceMs: 0, historySize: 4 });
  t.teardown(() => agg.close());
  const vips = new VipAllocator(store);
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  agg.subscribe((table, _previous, change) => (last = { table, change }));
  return {
    agg,
    vips,
    // What the pipeline does with the aggregator's table: the VIP stage, then the planes.
    next: async () => {
      last = undefined;
      agg.flush();
      const got = last as { table: RoutingTable; change: TableChange | undefined } | undefined;
      if (got === undefined) return undefined;
      return { table: await vips.annotate(got.table, got.change), change: got.change };
    },
  };
}

async function startPlane(
  t: Test,
  table: RoutingTable,
  options: Partial<DnsOptions> = {},
  config: Partial<DnsConfig> = {},
): Promise<DnsPlane> {
  const plane = createDnsPlane({
    config: baseConfig({ domains: DOMAINS, ...config }),
    registry: createRegistry({ defaultMetrics: false }),
    options: { holdMs: 0, ...options },
  });
  await plane.start(table);
  t.teardown(() => plane.stop(0));
  return plane;
}

/** Every name `input` publishes, its ancestors up to the apex (empty non-terminals), and a miss below and beside each. */
function namesOf(input: NameInput, into: Set<string>): void {
  const apexes = [...ZONES, 'thisdcos.directory'];
  const add = (n: string): void => {
    into.add(n);
    into.add(`zz.${n}`);
    const apex = apexes.filter((a) => n === a || n.endsWith(`.${a}`)).sort((a, b) => b.length - a.length)[0];
    if (apex === undefined) return;
    let p = n;
    while (p.includes('.') && p !== apex) {
      p = p.slice(p.indexOf('.') + 1);
      into.add(p);
    }
  };
  emitRecords(input, { address: add, srv: add, ptr: add });
}

function inputOf(table: RoutingTable): NameInput {
  return { services: table.services.values(), vips: table.vips, mesosZones: ZONES, self: SELF };
}

const SLOTS: Array<[number, number]> = [
  [SLOT.A, T.A],
  [SLOT.AAAA, T.AAAA],
  [SLOT.SRV, T.SRV],
  [SLOT.PTR, T.PTR],
  [SLOT.ANY, T.ANY],
];

/**
 * What `patched` serves against what `fresh` serves, for every name in `names`: whether the name exists,
 * and every precompiled answer (apexes aside: their SOA has each zone's serial). Returns the mismatches.
 */
function compareZones(patched: Zone, fresh: Zone, names: Iterable<string>): { problems: string[]; answers: number } {
  const problems: string[] = [];
  let answers = 0;
  if (patched.version !== fresh.version) problems.push(`version ${patched.version} vs ${fresh.version}`);
  if (patched.endpoints !== fresh.endpoints) problems.push(`endpoints ${patched.endpoints} vs ${fresh.endpoints}`);
  for (const name of names) {
    const a = patched.lookup(name);
    const b = fresh.lookup(name);
    if ((a === undefined) !== (b === undefined)) {
      problems.push(`${name}: ${a ? 'exists' : 'missing'} in the patched zone, ${b ? 'exists' : 'missing'} in a fresh one`);
      continue;
    }
    if (a === undefined || b === undefined || a.apex !== undefined) continue;
    for (const [slot, qtype] of SLOTS) {
      const x = patched.answer(a, slot, qtype);
      const y = fresh.answer(b, slot, qtype);
      answers++;
      if (x === null && y === null) continue;
      if (x === null || y === null || !x.buf.equals(y.buf)) problems.push(`${name} type ${qtype}: answers differ`);
    }
  }
  return { problems, answers };
}

/** An answer over UDP, as comparable text: rcode, flags, sorted records (SOA serial left out). */
async function asked(c: UdpClient, port: number, name: string, type: number, id: number): Promise<string> {
  const out = await c.ask(port, query({ name, type, id }));
  const h = header(out);
  const p = decode(out);
  const rr = (r: Record<string, unknown>): string =>
    JSON.stringify(
      Object.entries(r)
        .filter(([k]) => k !== 'serial' && k !== 'ttl' && k !== 'class')
        .sort(([x], [y]) => (x < y ? -1 : 1)),
    );
  return JSON.stringify({
    rcode: h.rcode,
    aa: h.aa,
    tc: h.tc,
    an: p.answers.map((r) => rr(r as unknown as Record<string, unknown>)).sort(),
    ns: p.authorities.map((r) => rr(r as unknown as Record<string, unknown>)).sort(),
    ar: p.additionals.map((r) => rr(r as unknown as Record<string, unknown>)).sort(),
  });
}

t.test('random tables and changes: the patched zone serves what a fresh plane on the same table serves', async (t) => {
  const rng = new Rng(seed);
  const w = await world(t);
  const providers = ['alpha', 'beta'];
  const state = new Map<string, Map<string, Local> | undefined>();
  const snapshotOf = (p: string): Snapshot => ({
    provider: p,
    services: Object.fromEntries(state.get(p) ?? []),
    routes: [],
    entrypoints: {},
  });
  for (const p of providers) {
    const m = new Map<string, Local>();
    for (let i = 0; i < 4; i++) {
      const name = NAMES[rng.int(NAMES.length)]!;
      m.set(name, randomService(rng, name));
    }
    state.set(p, m);
    w.agg.update(p, p === 'alpha' ? 1 : 0, snapshotOf(p));
  }
  const first = await w.next();
  if (!first) throw new Error('no first table');
  const plane = await startPlane(t, first.table);
  const names = new Set<string>();
  namesOf(inputOf(first.table), names);
  const client = await new UdpClient().open();
  t.teardown(() => client.close());

  let steps = 0;
  let patches = 0;
  let answers = 0;
  let udp = 0;
  let id = 1;
  const failures: string[] = [];
  for (let step = 0; step < 60; step++) {
    // One to three provider changes, then one table.
    for (let op = 1 + rng.int(3); op > 0; op--) {
      const p = providers[rng.int(providers.length)]!;
      const priority = p === 'alpha' ? 1 : 0;
      const m = state.get(p);
      const roll = rng.int(20);
      if (m === undefined) {
        // Gone: it comes back with what it had, or something new.
        const back = new Map<string, Local>();
        for (let i = rng.int(4); i > 0; i--) {
          const name = NAMES[rng.int(NAMES.length)]!;
          back.set(name, randomService(rng, name));
        }
        state.set(p, back);
        w.agg.update(p, priority, snapshotOf(p));
      } else if (roll === 0) {
        state.set(p, undefined);
        w.agg.remove(p);
      } else if (roll <= 2) {
        // A whole snapshot with a few services changed (the aggregator diffs it).
        for (const [name, s] of m) if (rng.int(3) === 0) m.set(name, touchEndpoint(rng, s));
        w.agg.update(p, priority, snapshotOf(p));
      } else {
        const delta: SnapshotDelta = {};
        const existing = [...m.keys()];
        const name = existing.length > 0 && roll > 5 ? existing[rng.int(existing.length)]! : NAMES[rng.int(NAMES.length)]!;
        const s = m.get(name);
        if (roll <= 4 && s !== undefined) {
          m.delete(name);
          delta.remove = [name];
        } else {
          let next: Local;
          if (s === undefined || roll === 5) next = randomService(rng, name);
          else if (roll === 6) next = { ...s, vips: vips(rng) };
          else if (roll === 7) next = { ...s, framework: FRAMEWORKS[rng.int(FRAMEWORKS.length)]! };
          else next = touchEndpoint(rng, s);
          m.set(name, next);
          delta.upsert = { [name]: next };
        }
        w.agg.change(p, priority, delta);
      }
    }
    const got = await w.next();
    if (!got) continue;
    steps++;
    const before = plane.currentZone();
    plane.apply(got.table, got.change);
    const zone = plane.currentZone();
    if (zone.nodes === before.nodes) patches++;
    namesOf(inputOf(got.table), names);

    const fresh = await startPlane(t, got.table);
    const cmp = compareZones(zone, fresh.currentZone(), names);
    answers += cmp.answers;
    for (const p of cmp.problems.slice(0, 5)) failures.push(`step ${step} (v${got.table.version}): ${p}`);
    const rows = (pl: DnsPlane) => JSON.stringify([...names].map((n) => [pl.hosts(n), pl.services(n)]));
    if (rows(plane) !== rows(fresh)) failures.push(`step ${step}: lookup api rows differ`);
    if (JSON.stringify(plane.enumerate()) !== JSON.stringify(fresh.enumerate())) failures.push(`step ${step}: enumerate differs`);
    // Some names over real sockets, both planes.
    const list = [...names];
    for (let i = 0; i < 12; i++) {
      const name = list[rng.int(list.length)]!;
      const type = [T.A, T.AAAA, T.SRV, T.PTR, T.TXT][rng.int(5)]!;
      const a = await asked(client, plane.address().udp.port, name, type, id++ & 0xffff);
      const b = await asked(client, fresh.address().udp.port, name, type, id++ & 0xffff);
      udp++;
      if (a !== b) failures.push(`step ${step}: ${name} type ${type} over udp: ${a} vs ${b}`);
    }
    await fresh.stop(0);
  }
  t.same(failures.slice(0, 20), [], 'no difference from a whole compile at any step');
  t.ok(steps >= 45, `${steps} tables applied`);
  t.ok(patches >= steps / 2, `${patches} of them patched (the rest compiled whole)`);
  t.ok(answers > 10_000, `${answers} precompiled answers compared, ${udp} queries over udp, ${names.size} names`);
});

t.test('names several services contribute to are rebuilt from every contributor', async (t) => {
  const w = await world(t);
  const [l1, l2] = [LONG[2]!, LONG[3]!];
  const ep = (address: string, extra: Partial<Endpoint>): Endpoint => ({
    address,
    port: 80,
    weight: 1,
    health: 'healthy',
    labels: {},
    ...extra,
  });
  const svc = (name: string, eps: Endpoint[]): Local => ({
    name,
    framework: 'marathon',
    endpoints: eps,
    balance: { algorithm: 'roundrobin' },
    vips: [],
    labels: {},
  });
  const services: Record<string, Local> = {
    // One canonical name (same task id, labels alike in their first 57 bytes), two SRV names.
    one: svc('one', [ep('10.1.0.1', { task: l1, taskId: 't1', agentAddress: '192.168.9.1' })]),
    two: svc('two', [ep('10.1.0.2', { task: l2, taskId: 't1', agentAddress: '192.168.9.1' })]),
    // A task label that is another endpoint's canonical label.
    three: svc('three', [ep('10.1.0.3', { task: 'web', taskId: 't1' })]),
    four: svc('four', [ep('10.1.0.4', { task: WEB_T1 })]),
    // Framework `marathon.slave`: its task name is the `.slave` form of three's canonical name (the target of three's host SRV).
    six: { ...svc('six', [ep('10.1.0.6', { task: WEB_T1 })]), framework: 'marathon.slave' },
    // One SRV set and one PTR address from two services.
    five: svc('five', [ep('10.1.0.1', { task: 'web', taskId: 't9', port: 81 })]),
  };
  w.agg.update('p', 0, { provider: 'p', services, routes: [], entrypoints: {} });
  const first = await w.next();
  const plane = await startPlane(t, first!.table);
  const names = new Set<string>();
  namesOf(inputOf(first!.table), names);
  const canonical = `${canonicalLabel(l1, services.one!.endpoints[0]!, 'one@p')}.marathon.mesos`;
  t.same(
    plane.hosts(canonical).map((r) => r.ip),
    ['10.1.0.1', '10.1.0.2'],
    'the shared canonical name has both addresses',
  );
  const srvOne = `_${l1.slice(0, 62)}._tcp.marathon.mesos`;
  t.ok(plane.services(srvOne).length > 0, 'one has its SRV name');

  const step = async (what: string, name: string, next: Local | undefined): Promise<void> => {
    compareZones(plane.currentZone(), plane.currentZone(), names); // every name resolved and its answers compiled
    const before = plane.currentZone();
    w.agg.change('p', 0, next === undefined ? { remove: [name] } : { upsert: { [name]: next } });
    const got = await w.next();
    plane.apply(got!.table, got!.change);
    t.equal(plane.currentZone().nodes, before.nodes, `${what}: patched`);
    namesOf(inputOf(got!.table), names);
    const fresh = await startPlane(t, got!.table);
    const cmp = compareZones(plane.currentZone(), fresh.currentZone(), names);
    t.same(cmp.problems, [], `${what}: ${cmp.answers} answers as a fresh plane's`);
    await fresh.stop(0);
  };
  await step(
    "two moves: one's SRV answer carries the shared target's new address",
    'two',
    svc('two', [ep('10.1.0.22', { task: l2, taskId: 't1', agentAddress: '192.168.9.1' })]),
  );
  t.same(
    plane.hosts(canonical).map((r) => r.ip),
    ['10.1.0.1', '10.1.0.22'],
    'the shared canonical name follows',
  );
  await step("four moves: three's SRV target (four's task name) follows", 'four', svc('four', [ep('10.1.0.44', { task: WEB_T1 })]));
  await step("six moves: three's host SRV target (six's task name) follows", 'six', {
    ...svc('six', [ep('10.1.0.66', { task: WEB_T1 })]),
    framework: 'marathon.slave',
  });
  await step('five leaves: the shared SRV set and PTR keep the other contributor', 'five', undefined);
  t.same(
    plane.services('_web._tcp.marathon.mesos').map((r) => r.port),
    ['80'],
    'the SRV set keeps three',
  );
  t.same(plane.currentZone().lookup(reverseOf('10.1.0.1'))?.ptr, [`${l1}.marathon.mesos`], 'the PTR keeps one');
  await step(
    'one moves to another agent: the agents follow',
    'one',
    svc('one', [ep('10.1.0.1', { task: l1, taskId: 't1', agentAddress: '192.168.9.2' })]),
  );
  t.same(
    plane.hosts('slave.mesos').map((r) => r.ip),
    ['10.1.0.3', '10.1.0.44', '10.1.0.66', '192.168.9.1', '192.168.9.2'],
    'slave.mesos has every agent',
  );
});

t.test('one endpoint change keeps every compiled part of untouched services and drops exactly the touched names', async (t) => {
  const agg = new Aggregator({ debounceMs: 0 });
  t.teardown(() => agg.close());
  let last: { table: RoutingTable; change: TableChange | undefined } | undefined;
  agg.subscribe((table, _previous, change) => (last = { table, change }));
  const snap = bigSnapshot('marathon', 2000, 5);
  agg.update('marathon', 0, snap);
  const plane = await startPlane(t, agg.flush());
  const zone = plane.currentZone();

  // Warm: every name of 100 services (their SRV answers resolve their canonical names too), their
  // PTRs, the agents.
  const warm: string[] = ['slave.mesos'];
  for (let s = 0; s < 100; s++) {
    warm.push(`app${s}.marathon.mesos`, `_app${s}._tcp.marathon.mesos`, `app${s}.marathon.agentip.dcos.thisdcos.directory`);
    for (const e of snap.services[`app${s}`]!.endpoints) warm.push(reverseOf(e.address));
  }
  const compiled = new Map<string, { node: ZoneNode; answers: Array<unknown> }>();
  for (const name of warm) {
    const node = zone.lookup(name);
    if (!node) throw new Error(`${name} does not resolve`);
    const answers = SLOTS.map(([slot, qtype]) => zone.answer(node, slot, qtype));
    compiled.set(name, { node, answers });
  }
  const memo = new Map(zone.nodes);
  t.ok(memo.size > warm.length, `${memo.size} names memoised (SRV targets included)`);

  // app7's third endpoint moves.
  const s7 = snap.services.app7!;
  const moved = s7.endpoints[2]!;
  const next = { ...s7, endpoints: s7.endpoints.map((e) => (e === moved ? { ...e, address: '10.250.0.7' } : e)) };
  agg.change('marathon', 0, { upsert: { app7: next } });
  agg.flush();
  const got = last as { table: RoutingTable; change: TableChange | undefined } | undefined;
  t.same(got?.change?.upserted, ['app7@marathon'], 'the aggregator names the one service');
  plane.apply(got!.table, got!.change);
  const patched = plane.currentZone();
  t.not(patched, zone, 'a new zone');
  t.equal(patched.version, got!.table.version);
  t.equal(patched.nodes, zone.nodes, 'its memo of resolved names is the one the old zone had');

  const oldCanonical = `${canonicalLabel('app7', moved, 'app7@marathon')}.marathon.mesos`;
  const dropped = new Set<string>();
  for (const [key, node] of memo) if (patched.nodes.get(key) !== node && node.apex === undefined) dropped.add(node.name);
  t.same(
    [...dropped].sort(),
    [
      '_app7._tcp.marathon.mesos',
      oldCanonical,
      'app7.marathon.agentip.dcos.thisdcos.directory',
      'app7.marathon.mesos',
      reverseOf(moved.address),
      'slave.mesos',
    ].sort(),
    'exactly the names whose records changed are dropped',
  );
  let kept = 0;
  for (const [name, c] of compiled) {
    if (dropped.has(name)) continue;
    const node = patched.lookup(name);
    if (node !== c.node) t.fail(`${name}: resolved again`);
    const same = SLOTS.every(([slot, qtype], i) => patched.answer(node!, slot, qtype) === c.answers[i]);
    if (!same) t.fail(`${name}: an answer compiled again`);
    kept++;
  }
  t.equal(kept, compiled.size - 5, 'every other warmed name keeps its node and compiled answers');
  t.equal(patched.nodes.get(keyOf(oldCanonical)!), undefined, 'the old canonical name is gone from the memo');
  t.equal(patched.lookup(oldCanonical), undefined, 'and from the zone');
  t.same(
    plane.hosts('app7.marathon.mesos').map((r) => r.ip),
    [...s7.endpoints.filter((e) => e !== moved).map((e) => e.address), '10.250.0.7'].sort(),
    'the changed service answers its new addresses',
  );
  t.same(
    patched.lookup(reverseOf('10.250.0.7'))?.ptr,
    ['app7.marathon.mesos', 'slave.mesos'],
    'the new address has its PTRs (task, agent)',
  );
  t.equal(patched.endpoints, zone.endpoints, 'endpoint count unchanged');
});

t.test('a change that does not start from the served table is compiled whole, correctly', async (t) => {
  const w = await world(t);
  const snap = bigSnapshot('marathon', 20, 3);
  w.agg.update('marathon', 0, snap);
  const first = await w.next();
  const plane = await startPlane(t, first!.table);
  const zone0 = plane.currentZone();
  // Table 2 never reaches the plane; table 3 comes with the change from 2.
  w.agg.change('marathon', 0, { remove: ['app1'] });
  const skipped = await w.next();
  w.agg.change('marathon', 0, { upsert: { app2: { ...snap.services.app2!, endpoints: snap.services.app2!.endpoints.slice(1) } } });
  const third = await w.next();
  t.equal(third!.change?.from, skipped!.table.version, 'the change starts from the table the plane never saw');
  plane.apply(third!.table, third!.change);
  t.not(plane.currentZone().nodes, zone0.nodes, 'compiled whole: a new memo');
  const fresh = await startPlane(t, third!.table);
  const names = new Set<string>();
  namesOf(inputOf(first!.table), names);
  const cmp = compareZones(plane.currentZone(), fresh.currentZone(), names);
  t.same(cmp.problems, [], `${cmp.answers} answers as a fresh plane's`);
  t.same(plane.hosts('app1.marathon.mesos'), [], 'the service removed in the skipped table is gone');
});

t.test(
  'held providers: patches while a provider is held serve what whole compiles serve; a hold that ran out is compiled whole',
  async (t) => {
    const w = await world(t);
    const alpha = bigSnapshot('alpha', 10, 2);
    const gone = bigSnapshot('beta', 1, 2).services.app0!;
    const beta: Snapshot = {
      provider: 'beta',
      services: { gone: { ...gone, name: 'gone', vips: [], endpoints: gone.endpoints.map((e) => ({ ...e, task: 'gone' })) } },
      routes: [],
      entrypoints: {},
    };
    w.agg.update('alpha', 0, alpha);
    w.agg.update('beta', 0, beta);
    const first = await w.next();
    // The planes' clock: the hold runs out when the test says so.
    let clock = 1_000_000;
    const hold = { holdMs: 60_000, now: () => clock };
    const patched = await startPlane(t, first!.table, hold);
    const whole = await startPlane(t, first!.table, hold);
    const names = new Set<string>();
    namesOf(inputOf(first!.table), names);
    t.ok(patched.hosts('gone.marathon.mesos').length > 0, 'beta publishes gone.marathon.mesos');

    const step = async (what: string, expectPatch: boolean): Promise<void> => {
      const got = await w.next();
      if (!got) throw new Error(`${what}: no table`);
      const before = patched.currentZone().nodes;
      patched.apply(got.table, got.change);
      whole.apply(got.table);
      namesOf(inputOf(got.table), names);
      t.equal(patched.currentZone().nodes === before, expectPatch, `${what}: ${expectPatch ? 'patched' : 'compiled whole'}`);
      const cmp = compareZones(patched.currentZone(), whole.currentZone(), names);
      t.same(cmp.problems, [], `${what}: ${cmp.answers} answers as the whole compile's`);
      t.equal(JSON.stringify(patched.enumerate()), JSON.stringify(whole.enumerate()), `${what}: enumerate as the whole compile's`);
    };

    w.agg.remove('beta');
    await step('beta leaves (held)', false);
    t.ok(patched.hosts('gone.marathon.mesos').length > 0, 'its records are held');
    for (let i = 0; i < 3; i++) {
      const s = alpha.services[`app${i}`]!;
      alpha.services[`app${i}`] = { ...s, endpoints: [{ ...s.endpoints[0]!, health: 'unhealthy' }, ...s.endpoints.slice(1)] };
      w.agg.change('alpha', 0, { upsert: { [`app${i}`]: alpha.services[`app${i}`]! } });
      await step(`alpha changes while beta is held (${i})`, true);
    }
    t.ok(patched.hosts('gone.marathon.mesos').length > 0, 'still held');
    // The hold runs out between two tables: the next change is compiled whole, without beta.
    clock += 60_000;
    w.agg.change('alpha', 0, { remove: ['app9'] });
    await step('alpha changes after the hold ran out', false);
    t.same(patched.hosts('gone.marathon.mesos'), [], 'the held records are gone');
    w.agg.change('alpha', 0, { remove: ['app8'] });
    await step('alpha changes again', true);
    w.agg.update('beta', 0, beta);
    // Nothing is held any more: beta's return is a change like any other (the aggregator sends one).
    await step('beta is back', true);
    t.ok(patched.hosts('gone.marathon.mesos').length > 0, 'beta publishes again');
    w.agg.remove('beta');
    await step('beta leaves again (held)', false);
    w.agg.update('beta', 0, { ...beta, services: {} });
    await step('beta is back, empty', false);
    t.same(patched.hosts('gone.marathon.mesos'), [], 'a provider present with nothing is honoured');
  },
);

t.test("a whole table's zone is built in slices: the previous one serves meanwhile; anything that needs it finishes it", async (t) => {
  const w = await world(t);
  const registry = createRegistry({ defaultMetrics: false });
  const compiles = async (): Promise<number> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'portico_dns_zone_compile_seconds');
    return Number((m?.values as Array<{ metricName?: string; value: number }>).find((v) => v.metricName?.endsWith('_count'))?.value);
  };
  const plane = createDnsPlane({ config: baseConfig({ domains: DOMAINS }), registry, options: { holdMs: 0 } });
  t.teardown(() => plane.stop(0));
  const tables: RoutingTable[] = [];
  for (let i = 0; i < 4; i++) {
    // 2,000 services × 5 endpoints: tens of ms of indexing, several slices.
    const snap = bigSnapshot('marathon', 2000, 5);
    for (const s of Object.values(snap.services)) s.endpoints[0]!.port = 7000 + i;
    w.agg.update('marathon', 0, snap);
    tables.push((await w.next())!.table);
  }
  await plane.start(tables[0]!);
  plane.hosts('app1.marathon.mesos'); // the first table's zone finished
  const n0 = await compiles();

  // 1. Applied whole: not built yet (nothing has had a turn), reported as applied, finished by a lookup.
  plane.apply(tables[1]!);
  t.equal(plane.status().tableVersion, tables[1]!.version, 'status: the table applied, without building it');
  t.equal(await compiles(), n0, 'not built yet');
  const name = `app7.marathon.mesos`;
  const fresh1 = await startPlane(t, tables[1]!);
  t.same(plane.hosts(name), fresh1.hosts(name), 'a lookup answers from the new table');
  t.equal(await compiles(), n0 + 1, 'built by the lookup');

  // 2. Nothing asks: the slices build it, between other events.
  plane.apply(tables[2]!);
  const began = Date.now();
  while ((await compiles()) === n0 + 1 && Date.now() - began < 10_000) await new Promise((r) => setTimeout(r, 5));
  t.equal(await compiles(), n0 + 2, 'built in the background');
  const fresh2 = await startPlane(t, tables[2]!);
  const names = new Set<string>();
  namesOf(inputOf(tables[2]!), names);
  t.same(compareZones(plane.currentZone(), fresh2.currentZone(), names).problems, [], 'the same zone as one compiled at once');

  // 3. A change from a table still building: that one is finished, then patched.
  plane.apply(tables[3]!);
  const snap = bigSnapshot('marathon', 2000, 5);
  for (const s of Object.values(snap.services)) s.endpoints[0]!.port = 7003;
  snap.services.app5!.endpoints[1]!.port = 1;
  w.agg.update('marathon', 0, snap);
  const next = (await w.next())!;
  t.equal(next.change?.from, tables[3]!.version);
  const before = plane.currentZone();
  plane.apply(next.table, next.change);
  t.equal(plane.currentZone().nodes, before.nodes, 'patched from the finished zone');
  const fresh3 = await startPlane(t, next.table);
  namesOf(inputOf(next.table), names);
  t.same(compareZones(plane.currentZone(), fresh3.currentZone(), names).problems, [], 'as compiled at once');
});
