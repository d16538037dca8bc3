import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import t, { type Test } from 'tap';
import type { Endpoint, RoutingTable, Service, VipEntry } from '../../src/model/types.js';
import { ServiceMap } from '../../src/model/service-map.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/types.js';
import { IP_PREFIX, NAME_PREFIX, VipAllocator } from '../../src/vips/index.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';

async function openStore(t: Test): Promise<{ store: EmbeddedStore; dir: string }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-vips-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  const store = await EmbeddedStore.open(dir);
  t.teardown(() => store.close().catch(() => undefined));
  return { store, dir };
}

const ep = (address: string, port = 80): Endpoint => ({ address, port, weight: 1, health: 'healthy', labels: {} });

/** A table with one service per name (with `endpoints`), each with the given VIPs. */
function table(
  specs: Array<{ name: string; endpoints?: Endpoint[]; ports?: Array<[number, 'tcp' | 'udp']> }>,
  ipVips: VipEntry[] = [],
): RoutingTable {
  const services: Record<string, Service> = {};
  const vips: VipEntry[] = [...ipVips];
  for (const s of specs) {
    const id = `${s.name}@file`;
    services[id] = {
      name: s.name,
      id,
      provider: 'file',
      framework: 'marathon',
      endpoints: s.endpoints ?? [ep('10.0.0.1')],
      balance: { algorithm: 'roundrobin' },
      vips: [],
      labels: {},
    };
    for (const [port, protocol] of s.ports ?? [[80, 'tcp']]) {
      vips.push({ key: `${protocol}/${s.name}.marathon:${port}`, protocol, name: s.name, framework: 'marathon', port, service: id });
    }
  }
  vips.sort((a, b) => (a.key < b.key ? -1 : 1));
  return {
    version: 7,
    hash: 'abc',
    createdAt: '2024-01-01T00:00:00.000Z',
    services: ServiceMap.from(services),
    routes: [],
    entrypoints: {},
    vips,
    conflicts: [],
    warnings: [],
    sources: {},
  };
}

const ipOf = (tb: RoutingTable, key: string) => tb.vips.find((v) => v.key === key)?.ip;
const inRange = (ip: string | undefined, cidr: string) => !!ip && ipaddr.parse(ip).match(ipaddr.parseCIDR(cidr));

t.test('a named VIP gets its hash address, the same after a restart; the table is otherwise unchanged', async (t) => {
  const { store, dir } = await openStore(t);
  const alloc = new VipAllocator(store);
  const input = table(
    [
      {
        name: 'web',
        ports: [
          [80, 'tcp'],
          [443, 'tcp'],
          [53, 'udp'],
        ],
      },
    ],
    [{ key: 'tcp/10.1.2.3:8080', protocol: 'tcp', framework: 'marathon', address: '10.1.2.3', port: 8080, service: 'web@file' }],
  );
  const out = await alloc.annotate(input);
  const ip = ipOf(out, 'tcp/web.marathon:80');
  t.equal(ip, alloc.initialAddress('web', 'marathon'), 'the first address is sha1(name.framework) mod the range');
  t.ok(inRange(ip, '11.0.0.0/8'), `${ip} is in 11.0.0.0/8`);
  t.equal(ipOf(out, 'tcp/web.marathon:443'), ip, 'every port of a name shares its address');
  t.equal(ipOf(out, 'udp/web.marathon:53'), ip, 'and every protocol');
  t.equal(ipOf(out, 'tcp/10.1.2.3:8080'), '10.1.2.3', 'an IP VIP is served on its own address');
  t.match(out, { version: 7, hash: 'abc', createdAt: input.createdAt, services: input.services }, 'same version, hash and content');
  t.ok(Object.isFrozen(out) && Object.isFrozen(out.vips) && Object.isFrozen(out.vips[0]), 'frozen');
  t.equal(input.vips[0]?.ip, undefined, 'the input table is not touched');
  t.ok(await store.get(`${NAME_PREFIX}ipv4/web.marathon`), 'recorded under its name');
  t.match(JSON.parse(String((await store.get(`${IP_PREFIX}${ip}`))?.value)), { owner: 'ipv4/web.marathon' }, 'and by address');

  await store.close();
  const reopened = await EmbeddedStore.open(dir);
  t.teardown(() => reopened.close());
  const again = await new VipAllocator(reopened).annotate(table([{ name: 'web' }]));
  t.equal(ipOf(again, 'tcp/web.marathon:80'), ip, 'the same address after a restart (store reopened)');
});

t.test('collisions probe linearly; a full range gives no address', async (t) => {
  const { store } = await openStore(t);
  const alloc = new VipAllocator(store, { ranges: { ipv4: '11.0.0.0/29' } });
  // Someone else holds web's first choice: web takes the next one.
  const first = alloc.initialAddress('web', 'marathon');
  await store.put(`${IP_PREFIX}${first}`, JSON.stringify({ owner: 'ipv4/squatter.marathon', claimedAt: new Date().toISOString() }));
  await store.put(
    `${NAME_PREFIX}ipv4/squatter.marathon`,
    JSON.stringify({
      name: 'squatter',
      framework: 'marathon',
      family: 'ipv4',
      ip: first,
      allocatedAt: new Date().toISOString(),
      idleSince: null,
    }),
  );
  const out = await alloc.annotate(table([{ name: 'web' }]));
  const n = (ip: string) => ipaddr.parse(ip).toByteArray()[3] as number;
  const want = n(first) === 6 ? 1 : n(first) + 1; // 11.0.0.1 … 11.0.0.6, wrapping
  t.equal(n(ipOf(out, 'tcp/web.marathon:80') as string), want, `taken ${first} → the next address`);

  const names = ['a', 'b', 'c', 'd', 'e', 'f'];
  const full = await alloc.annotate(table([{ name: 'web' }, ...names.map((name) => ({ name }))]));
  const ips = full.vips.map((v) => v.ip).filter((x): x is string => !!x);
  t.equal(new Set(ips).size, ips.length, 'no two names share an address');
  t.equal(ips.length, 5, 'a /29 has 6 usable addresses: web + squatter + 4 of the 6 new names');
  t.ok(
    ips.every((ip) => inRange(ip, '11.0.0.0/29') && ip !== '11.0.0.0' && ip !== '11.0.0.7'),
    'never the first or last address',
  );
  t.equal(full.vips.filter((v) => !v.ip).length, 2, 'the rest have none (and are not served)');
});

t.test('IPv6 endpoints only: an address from fd01:c::/64', async (t) => {
  const { store } = await openStore(t);
  const alloc = new VipAllocator(store);
  const out = await alloc.annotate(
    table([
      { name: 'v6', endpoints: [ep('fd00::10'), ep('fd00::11')] },
      { name: 'mixed', endpoints: [ep('fd00::10'), ep('10.0.0.2')] },
    ]),
  );
  const v6 = ipOf(out, 'tcp/v6.marathon:80');
  t.ok(inRange(v6, 'fd01:c::/64'), `${v6} in fd01:c::/64`);
  t.equal(v6, alloc.initialAddress('v6', 'marathon', 'ipv6'));
  t.ok(inRange(ipOf(out, 'tcp/mixed.marathon:80'), '11.0.0.0/8'), 'mixed families: IPv4');
});

t.test('two allocators on one store agree, whatever the interleaving', async (t) => {
  const { store } = await openStore(t);
  const a = new VipAllocator(store, { ranges: { ipv4: '11.0.0.0/26' } }); // small: collisions are certain
  const b = new VipAllocator(store, { ranges: { ipv4: '11.0.0.0/26' } });
  const names = Array.from({ length: 40 }, (_, i) => ({ name: `app${i}` }));
  const [ta, tb] = await Promise.all([a.annotate(table(names)), b.annotate(table([...names].reverse()))]);
  const ma = new Map(ta.vips.map((v) => [v.key, v.ip]));
  const mb = new Map(tb.vips.map((v) => [v.key, v.ip]));
  t.same(ma, mb, 'same name → same address on both');
  const ips = [...ma.values()];
  t.ok(ips.every(Boolean), 'everyone got one');
  t.equal(new Set(ips).size, 40, 'all distinct');
  t.equal((await store.list(IP_PREFIX)).length, 40, 'no leftover claims from lost races');
});

t.test('two allocators on one Redis store (separate connections) agree', async (t) => {
  // No skip: .ci/run installs redis-server, and a machine without it should fail here, loudly.
  t.ok(redisServerPath(), 'redis-server is installed (apt-get install redis-server)');
  const srv = await startRedis();
  t.teardown(() => srv.dispose());
  const s1: Store = await RedisStore.open(srv.url, { keyPrefix: 'vt:' });
  const s2: Store = await RedisStore.open(srv.url, { keyPrefix: 'vt:' });
  t.teardown(async () => {
    await s1.close();
    await s2.close();
  });
  const opts = { ranges: { ipv4: '11.0.0.0/27' } };
  const names = Array.from({ length: 25 }, (_, i) => ({ name: `svc${i}` }));
  const results = await Promise.all([
    new VipAllocator(s1, opts).annotate(table(names)),
    new VipAllocator(s2, opts).annotate(table([...names].reverse())),
    new VipAllocator(s1, opts).annotate(table(names.slice(5))),
  ]);
  const maps = results.map((r) => new Map(r.vips.map((v) => [v.key, v.ip])));
  for (const [k, ip] of maps[2] as Map<string, string>) t.equal(maps[0]?.get(k), ip, `${k}: instances agree`);
  t.same(maps[0], maps[1]);
  t.equal(new Set(maps[0]?.values()).size, 25, 'all distinct');
});

t.test('released after the grace period without endpoints; kept while endpoints come back in time', async (t) => {
  const { store } = await openStore(t);
  let now = Date.parse('2024-05-01T00:00:00Z');
  const alloc = new VipAllocator(store, { graceMs: 60_000, clock: () => now });
  const ip = ipOf(await alloc.annotate(table([{ name: 'web' }])), 'tcp/web.marathon:80');
  t.ok(ip);
  const empty = table([{ name: 'web', endpoints: [] }]);
  t.equal(ipOf(await alloc.annotate(empty), 'tcp/web.marathon:80'), ip, 'no endpoints: keeps its address during the grace period');
  t.match(
    JSON.parse(String((await store.get(`${NAME_PREFIX}ipv4/web.marathon`))?.value)),
    { idleSince: '2024-05-01T00:00:00.000Z' },
    'the idle clock is in the store',
  );
  now += 30_000;
  t.equal(ipOf(await alloc.annotate(table([{ name: 'web' }])), 'tcp/web.marathon:80'), ip, 'endpoints back within the grace period');
  t.match(
    JSON.parse(String((await store.get(`${NAME_PREFIX}ipv4/web.marathon`))?.value)),
    { idleSince: null },
    'the idle clock is stopped',
  );
  await alloc.annotate(empty);
  now += 61_000;
  const gone = await alloc.annotate(empty);
  t.equal(ipOf(gone, 'tcp/web.marathon:80'), undefined, 'released after the grace period: not served');
  t.same(await store.list('portico/vips/'), [], 'both records removed');
  await alloc.annotate(table([{ name: 'other' }]));
  await alloc.annotate(table([])); // a name with no VIP any more starts its grace period too
  now += 61_000;
  await alloc.annotate(table([]));
  t.same(await store.list('portico/vips/'), [], 'a name that left the table is released after the grace period');
  t.equal(
    ipOf(await alloc.annotate(table([{ name: 'web' }])), 'tcp/web.marathon:80'),
    ip,
    'when endpoints return it gets its hash address again',
  );
});

t.test('repairs: a missing reverse entry is restored; an orphaned claim is removed', async (t) => {
  const { store } = await openStore(t);
  let now = Date.now();
  const alloc = new VipAllocator(store, { clock: () => now });
  const ip = ipOf(await alloc.annotate(table([{ name: 'web' }])), 'tcp/web.marathon:80') as string;
  await store.delete(`${IP_PREFIX}${ip}`);
  await store.put(`${IP_PREFIX}11.1.1.1`, JSON.stringify({ owner: 'ipv4/crashed.marathon', claimedAt: new Date(now).toISOString() }));
  t.equal(ipOf(await alloc.annotate(table([{ name: 'web' }])), 'tcp/web.marathon:80'), ip);
  t.match(JSON.parse(String((await store.get(`${IP_PREFIX}${ip}`))?.value)), { owner: 'ipv4/web.marathon' }, 'reverse entry restored');
  t.ok(await store.get(`${IP_PREFIX}11.1.1.1`), 'a fresh orphan is left alone (a claim may be in flight)');
  now += 61_000;
  await alloc.annotate(table([{ name: 'web' }]));
  t.equal(await store.get(`${IP_PREFIX}11.1.1.1`), undefined, 'an old orphan is removed');
});

t.test('store unavailable: the addresses last seen are served, annotate does not reject', async (t) => {
  const { store } = await openStore(t);
  const alloc = new VipAllocator(store);
  const ip = ipOf(await alloc.annotate(table([{ name: 'web' }])), 'tcp/web.marathon:80');
  await store.close();
  const out = await alloc.annotate(table([{ name: 'web' }, { name: 'new' }]));
  t.equal(ipOf(out, 'tcp/web.marathon:80'), ip, 'known address kept');
  t.equal(ipOf(out, 'tcp/new.marathon:80'), undefined, 'nothing new is invented without the store');
});
