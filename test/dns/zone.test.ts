/**
 * The zone against its specification. `emitRecords` (names.ts) lists every record a table publishes,
 * name by name; the zone resolves names lazily from compact indexes. For seeded random tables (dotted
 * frameworks, long task names, IPv6, agents, containers, every health state, hidden services, VIPs,
 * extra domains) every emitted name must resolve to exactly the emitted records — in-process and
 * through the wire — every ancestor of an emitted name up to its apex must exist (empty
 * non-terminals), and names that are not emitted must not exist.
 */
import t from 'tap';
import { MAX_PTR, emitRecords, type NameInput, type SrvData } from '../../src/dns/names.js';
import { Query } from '../../src/dns/query.js';
import { compileZone } from '../../src/dns/zone.js';
import type { Endpoint, HealthState, Service, VipEntry } from '../../src/model/types.js';
import { ServiceMap } from '../../src/model/service-map.js';
import { decode, header, query, Rng, seedFromEnv, startPlane, T } from './helpers.js';

const seed = seedFromEnv();
t.comment(`seed ${seed} (PORTICO_SEED=${seed} to reproduce)`);

const HEALTH: HealthState[] = ['healthy', 'unknown', 'unhealthy', 'draining'];
const FRAMEWORKS = ['marathon', 'my.framework', 'Spark_Cluster', 'a.b.c', 'slave'];
// Two long labels that share their first 62 bytes: one SRV name for both.
const TASKS = ['web', 'db', 'api', 'DB_Primary', 'x'.repeat(70), `${'x'.repeat(62)}y`, 'agentip', 'leader', 'svc.with.dots', 'slave'];

function randomTable(rng: Rng): { services: Service[]; vips: VipEntry[] } {
  const services: Service[] = [];
  const vips: VipEntry[] = [];
  const n = 1 + rng.int(8);
  for (let i = 0; i < n; i++) {
    const framework = FRAMEWORKS[rng.int(FRAMEWORKS.length)]!;
    const name = `svc${i}`;
    const endpoints: Endpoint[] = [];
    const m = rng.int(6);
    for (let j = 0; j < m; j++) {
      const v6 = rng.int(5) === 0;
      const address = v6 ? `fd00::${rng.int(4) + 1}:${j + 1}` : `10.${i}.${rng.int(3)}.${j + 1}`;
      const e: Endpoint = {
        address,
        port: 1000 + rng.int(5),
        weight: rng.int(6) === 0 ? 0 : 1 + rng.int(3),
        health: HEALTH[rng.int(4)]!,
        labels: {},
      };
      if (rng.int(3) === 0) e.task = TASKS[rng.int(TASKS.length)]!;
      if (rng.int(2) === 0) e.taskId = `${name}.${j}`;
      if (rng.int(3) === 0) {
        e.agentAddress = v6 ? `fd00::a${rng.int(3)}` : `192.168.0.${rng.int(4) + 1}`;
        e.network = 'dcos';
      }
      endpoints.push(e);
    }
    const s: Service = {
      name,
      id: `${name}@p${rng.int(2)}`,
      provider: 'p',
      framework,
      endpoints,
      balance: { algorithm: 'roundrobin' },
      vips: [],
      labels: {},
    };
    if (rng.int(8) === 0) s.dnsHidden = true;
    services.push(s);
    if (rng.int(2) === 0) {
      const vip: VipEntry = {
        key: `tcp/${name}:80`,
        protocol: 'tcp',
        name: rng.int(3) === 0 ? `grp.${name}` : name,
        framework,
        port: 80,
        service: s.id,
      };
      if (rng.int(4) !== 0) vip.ip = rng.int(4) === 0 ? `fd01:c::${i + 1}` : `11.0.0.${i + 1}`;
      vips.push(vip);
    }
  }
  return { services, vips };
}

interface Expected {
  addrs: Set<string>;
  srv: Map<string, SrvData>;
  ptr: Set<string>;
}

function expected(input: NameInput): Map<string, Expected> {
  const out = new Map<string, Expected>();
  const get = (n: string) => {
    let e = out.get(n);
    if (!e) out.set(n, (e = { addrs: new Set(), srv: new Map(), ptr: new Set() }));
    return e;
  };
  emitRecords(input, {
    address: (n, v) => {
      get(n).addrs.add(v);
    },
    srv: (n, s) => {
      get(n).srv.set(`${s.target} ${s.port}`, s);
    },
    ptr: (n, p) => {
      get(n).ptr.add(p);
    },
  });
  return out;
}

const srvKey = (s: SrvData) => `${s.priority} ${s.weight} ${s.port} ${s.target}`;

t.test('zone ≡ emitRecords on random tables', async (t) => {
  const rng = new Rng(seed);
  let names = 0;
  for (let round = 0; round < 40; round++) {
    const table = randomTable(rng);
    const mesosZones = rng.int(2) === 0 ? ['mesos'] : ['mesos', 'corp.example', 'prod.mesos'];
    const input: NameInput = { ...table, mesosZones, self: '127.0.0.1' };
    const zone = compileZone(input, { ttl: 5, serial: 1, version: 1, ready: true, recursionAvailable: false });
    const want = expected(input);
    const apexes = [...mesosZones, 'thisdcos.directory'];
    const ents = new Set<string>();
    for (const name of want.keys()) {
      const apex = apexes.filter((a) => name === a || name.endsWith(`.${a}`)).sort((a, b) => b.length - a.length)[0];
      if (!apex) continue;
      let p = name;
      while (p.includes('.') && p !== apex) {
        p = p.slice(p.indexOf('.') + 1);
        if (p.length > apex.length) ents.add(p);
      }
    }
    for (const [name, e] of want) {
      names++;
      const node = zone.lookup(name);
      if (!node) {
        t.fail(`round ${round}: ${name} does not resolve`);
        continue;
      }
      const got = [...node.v4, ...node.v6].sort();
      if (JSON.stringify(got) !== JSON.stringify([...e.addrs].sort()))
        t.same(got, [...e.addrs].sort(), `round ${round}: ${name} addresses`);
      const gotSrv = node.srv.map(srvKey).sort();
      const wantSrv = [...e.srv.values()].map(srvKey).sort();
      if (JSON.stringify(gotSrv) !== JSON.stringify(wantSrv)) t.same(gotSrv, wantSrv, `round ${round}: ${name} SRV`);
      const wantPtr = [...e.ptr].sort().slice(0, MAX_PTR);
      if (JSON.stringify([...node.ptr]) !== JSON.stringify(wantPtr)) t.same(node.ptr, wantPtr, `round ${round}: ${name} PTR`);
    }
    for (const ent of ents) {
      if (want.has(ent)) continue;
      const node = zone.lookup(ent);
      if (!node) t.fail(`round ${round}: empty non-terminal ${ent} missing`);
      else if (node.v4.length + node.v6.length + node.srv.length + node.ptr.length > 0) t.fail(`round ${round}: ${ent} has records`);
    }
    for (const name of [...want.keys(), ...ents]) {
      for (const probe of [`zz-nope.${name}`, name.replace(/^[^.]+/, 'zz-nope')]) {
        if (want.has(probe) || ents.has(probe) || apexes.includes(probe)) continue;
        if (zone.lookup(probe)) t.fail(`round ${round}: ${probe} exists but is not published`);
      }
    }
  }
  t.ok(names > 500, `${names} names checked`);
});

t.test('through the wire: every emitted A/AAAA/SRV/PTR name answers the emitted records', async (t) => {
  const rng = new Rng(seed ^ 0xabcdef);
  const s = await startPlane(t, []);
  const q = new Query();
  let checked = 0;
  for (let round = 0; round < 8; round++) {
    const { services, vips } = randomTable(rng);
    const table = s.agg.current();
    s.apply({ ...table, version: round + 1, services: ServiceMap.from(services.map((x) => [x.id, x] as const)), vips } as typeof table);
    const want = expected({ services, vips, mesosZones: ['mesos'], self: '127.0.0.1' });
    for (const [name, e] of want) {
      const types: number[] = [];
      if ([...e.addrs].some((a) => !a.includes(':'))) types.push(T.A);
      if ([...e.addrs].some((a) => a.includes(':'))) types.push(T.AAAA);
      if (e.srv.size) types.push(T.SRV);
      if (e.ptr.size) types.push(T.PTR);
      for (const type of types) {
        const out = s.plane.respondTo(query({ name, type }), q, '127.0.0.1', true, 0);
        if (!Buffer.isBuffer(out)) {
          t.fail(`${name}/${type}: no answer`);
          continue;
        }
        const h = header(out);
        const p = decode(out);
        checked++;
        if (h.rcode !== 0 || !h.aa) t.fail(`${name}/${type}: rcode ${h.rcode}`);
        if (type === T.A || type === T.AAAA) {
          const wantA = [...e.addrs].filter((a) => (type === T.AAAA) === a.includes(':')).sort();
          t.same(p.answers.map((r) => r.address).sort(), wantA, `${name} ${type}`);
        } else if (type === T.SRV) {
          t.same(
            p.answers.map((r) => `${r.priority} ${r.weight} ${r.port} ${r.target}`).sort(),
            [...e.srv.values()].map(srvKey).sort(),
            `${name} SRV`,
          );
        } else {
          t.same(p.answers.map((r) => r.domain).sort(), [...e.ptr].sort().slice(0, MAX_PTR), `${name} PTR`);
        }
      }
    }
  }
  t.ok(checked > 50, `${checked} answers checked`);
});
