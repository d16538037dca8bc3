/**
 * IPAM and agent subnets, in process against a real embedded store: CAS claims, restart, exhaustion,
 * network changes, config parsing (host-local's format), concurrency, all-or-nothing, GC, orphans.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes, PorticoError } from '../../src/model/errors.js';
import { claimSubnet, ensureNetworks, registerAgent } from '../../src/overlay/agents.js';
import { CniCode } from '../../src/overlay/cni/protocol.js';
import { openOverlay, DEFAULT_VTEP } from '../../src/overlay/index.js';
import { CniFailure, Ipam, planFor, requestedIps, type AgentView } from '../../src/overlay/ipam.js';
import { serve } from '../../src/overlay/server.js';
import { KEY } from '../../src/overlay/types.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { tmpdir } from './helpers.js';

async function store(t: { teardown(fn: () => unknown): void }): Promise<EmbeddedStore> {
  const dir = tmpdir('ipam');
  const s = await EmbeddedStore.open(path.join(dir, 'store'));
  t.teardown(async () => {
    await s.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return s;
}

const view = (subnets: Record<string, string> = { dcos: '9.0.3.0/24', dcos6: 'fd01:b::3:0:0:0/80' }): AgentView => ({
  agentId: 'a1',
  network: (n) =>
    n === 'dcos'
      ? { name: 'dcos', subnet: '9.0.0.0/8', prefix: 24 }
      : n === 'dcos6'
        ? { name: 'dcos6', subnet: 'fd01:b::/64', prefix: 80 }
        : undefined,
  subnet: (n) => (subnets[n] ? { subnet: subnets[n]! } : { error: `no subnet of ${n}` }),
});

const cfg = (ipam: Record<string, unknown>, name = 'net'): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name,
  type: 'bridge',
  ipam: { type: 'portico-cni', ...ipam },
});

t.test('agents claim distinct subnets by CAS; a restarted agent gets its own back', async (t) => {
  const s = await store(t);
  const net = { name: 'dcos', subnet: '9.0.0.0/8', prefix: 24 };
  await ensureNetworks(s, [net]);
  const got = await Promise.all(Array.from({ length: 12 }, (_, i) => claimSubnet(s, net, `agent-${i}`)));
  t.equal(new Set(got).size, 12, 'twelve agents racing: twelve different subnets');
  t.equal(await claimSubnet(s, net, 'agent-5'), got[5], 'agent-5 again: the same subnet');
  const rec = await registerAgent(s, 'agent-5', '192.0.2.5', [net], DEFAULT_VTEP);
  t.equal(rec.subnets.dcos, got[5]);
  const again = await registerAgent(s, 'agent-5', '192.0.2.5', [net], DEFAULT_VTEP);
  t.equal(again.vtepIp, rec.vtepIp, 'same VTEP after a restart');
  t.match(rec.vtepMac, /^70:b3:d5:/);
});

t.test('subnet exhaustion is an error the api shows', async (t) => {
  const s = await store(t);
  const net = { name: 'tiny', subnet: '10.9.0.0/23', prefix: 24 };
  const sockDir = tmpdir('sock');
  t.teardown(() => fs.rmSync(sockDir, { recursive: true, force: true }));
  const sock = (n: string) => path.join(sockDir, `${n}.sock`);
  const a = await openOverlay({ store: s, agentId: 'a', agentIp: '192.0.2.1', networks: [net], socketPath: sock('a') });
  const b = await openOverlay({ store: s, agentId: 'b', agentIp: '192.0.2.2', networks: [net], socketPath: sock('b') });
  const c = await openOverlay({ store: s, agentId: 'c', agentIp: '192.0.2.3', networks: [net], socketPath: sock('c') });
  t.teardown(async () => {
    await a.close();
    await b.close();
    await c.close();
  });
  t.not(a.agent().subnets.tiny, b.agent().subnets.tiny);
  t.equal(c.agent().subnets.tiny, undefined);
  const st = await c.status();
  t.match(st.networks[0], { name: 'tiny', subnetsTotal: '2', subnetsUsed: 2, error: /no free \/24 left for agent c/ });
  // ADD on c fails with our code, saying why.
  const reply = await serve(
    JSON.stringify({ command: 'ADD', containerId: 'x', ifName: 'eth0', config: cfg({ network: 'tiny' }) }),
    new Ipam(s, {
      agentId: 'c',
      network: () => net,
      subnet: () => ({ error: st.networks[0]!.error! }),
    }),
    silentLogger,
  );
  t.match(reply, { ok: false, error: { code: CniCode.NO_AGENT_SUBNET, details: /no free/ } });
  // Removing an agent frees its subnet for the next one.
  t.equal(await a.removeAgent('b'), true);
  const d = await openOverlay({ store: s, agentId: 'd', agentIp: '192.0.2.4', networks: [net], socketPath: sock('d') });
  t.teardown(() => d.close());
  t.equal(d.agent().subnets.tiny, b.agent().subnets.tiny);
});

t.test('changing the subnet of a network in use is refused', async (t) => {
  const s = await store(t);
  await ensureNetworks(s, [{ name: 'n', subnet: '10.0.0.0/16', prefix: 24 }]);
  await ensureNetworks(s, [{ name: 'n', subnet: '10.1.0.0/16', prefix: 24 }]);
  const stored = JSON.parse((await s.get(KEY.network('n')))!.value.toString('utf8')) as { subnet: string };
  t.equal(stored.subnet, '10.1.0.0/16', 'a network no agent uses yet is replaced');
  await claimSubnet(s, { name: 'n', subnet: '10.1.0.0/16', prefix: 24 }, 'a');
  await t.rejects(ensureNetworks(s, [{ name: 'n', subnet: '10.2.0.0/16', prefix: 24 }]), {
    code: ErrorCodes.OVERLAY_NETWORK_CHANGED,
    message: /in use/,
  });
  await t.rejects(ensureNetworks(s, [{ name: 'n', subnet: '10.1.0.0/16', prefix: 26 }]), PorticoError);
  await ensureNetworks(s, [{ name: 'n', subnet: '10.1.0.0/16', prefix: 24 }]);
});

t.test('config: host-local formats, overlay names, errors are code 7', async (t) => {
  const legacy = planFor(
    cfg({ subnet: '10.0.0.0/24', rangeStart: '10.0.0.10', rangeEnd: '10.0.0.20', gateway: '10.0.0.254', routes: [{ dst: '0.0.0.0/0' }] }),
    view(),
  );
  t.equal(legacy.sets.length, 1);
  t.equal(legacy.sets[0]!.ranges[0]!.start, 0x0a00000an);
  t.same(legacy.routes, [{ dst: '0.0.0.0/0' }]);
  const dual = planFor(cfg({ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.1.0/24' }], [{ subnet: 'fd00::/64' }]] }), view());
  t.same(
    dual.sets.map((s) => [s.family, s.ranges.length]),
    [
      [4, 2],
      [6, 1],
    ],
  );
  const ov = planFor(cfg({ network: ['dcos', 'dcos6'] }), view());
  t.same(ov.routes, [
    { dst: '9.0.0.0/8', gw: '9.0.3.1' },
    { dst: 'fd01:b::/64', gw: 'fd01:b::3:0:0:1' },
  ]);
  for (const [ipam, re] of [
    [{}, /names no overlay network/],
    [{ network: 'nope' }, /no overlay network "nope"/],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }]] }, /mixes IPv4 and IPv6/],
    [{ ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.128/25' }]] }, /overlap/],
    [{ ranges: [[{ subnet: '10.0.0.0/24', rangeStart: '10.0.1.1' }]] }, /not inside/],
    [{ ranges: [[{ subnet: 'banana' }]] }, /not a CIDR/],
    [{ ranges: {} }, /list of range sets/],
  ] as const) {
    t.throws(
      () => planFor(cfg(ipam as Record<string, unknown>), view()),
      { code: CniCode.INVALID_CONFIG, message: re },
      JSON.stringify(ipam),
    );
  }
  t.throws(() => planFor(cfg({ network: 'dcos' }), view({})), { code: CniCode.NO_AGENT_SUBNET });
  t.same(
    requestedIps(
      { runtimeConfig: { ips: ['10.0.0.7/24'] }, args: { cni: { ips: ['fd00::7'] } } },
      'IgnoreUnknown=1;IP=10.0.0.8,10.0.0.7',
    ).map((r) => r.text),
    ['10.0.0.8', '10.0.0.7', 'fd00::7'],
  );
});

t.test('leases: no duplicates under concurrency, all-or-nothing, specific addresses, GC, orphans', async (t) => {
  const s = await store(t);
  const ipam = new Ipam(s, view());
  const c = cfg({ ranges: [[{ subnet: '10.0.0.0/26' }]] });
  const many = await Promise.all(Array.from({ length: 60 }, (_, i) => ipam.add(c, `c${i}`, 'eth0', undefined)));
  const addrs = many.map((r) => r.ips[0]!.address);
  t.equal(new Set(addrs).size, 60, '60 concurrent ADDs: 60 different addresses');
  t.notOk(addrs.includes('10.0.0.1/26'), 'the gateway is never leased');
  t.notOk(addrs.includes('10.0.0.63/26'), 'nor the broadcast address');
  t.equal((await ipam.add(c, 'c60', 'eth0', undefined)).ips.length, 1, '.2 to .62: 61 fit');
  await t.rejects(ipam.add(c, 'c61', 'eth0', undefined), { code: CniCode.EXHAUSTED });
  t.same(await ipam.add(c, 'c3', 'eth0', undefined), many[3], 'the same ADD again gets the same answer');

  // Dual stack where the v6 set is exhausted: the v4 address is given back.
  const d = cfg({ ranges: [[{ subnet: '10.1.0.0/24' }], [{ subnet: 'fd00::/126' }]] }, 'dual');
  const ok = await ipam.add(d, 'd0', 'eth0', undefined);
  t.equal(ok.ips.length, 2);
  t.match(ok.ips[1]!.address, /^fd00::/);
  await ipam.add(d, 'd1', 'eth0', undefined); // fd00::3 (::1 gateway, ::2, ::3)
  await t.rejects(ipam.add(d, 'd2', 'eth0', undefined), { code: CniCode.EXHAUSTED });
  const v4 = (await s.list(KEY.ips('r:dual'))).filter((e) => !e.key.includes(':', 'overlay/ip/r%3Adual/'.length));
  t.equal(v4.length, 2, 'no v4 address left behind by the failed dual-stack ADD');

  // Specific addresses.
  const r = cfg({ ranges: [[{ subnet: '10.2.0.0/24' }]] }, 'req');
  t.equal((await ipam.add(r, 'x', 'eth0', 'IP=10.2.0.50')).ips[0]!.address, '10.2.0.50/24');
  await t.rejects(ipam.add(r, 'y', 'eth0', 'IP=10.2.0.50'), { code: CniCode.ADDRESS_IN_USE, details: /x\/eth0/ });
  await t.rejects(ipam.add({ ...r, runtimeConfig: { ips: ['10.3.0.1/24'] } }, 'y', 'eth0', undefined), { code: CniCode.INVALID_CONFIG });
  t.equal((await ipam.add({ ...r, runtimeConfig: { ips: ['10.2.0.51/24'] } }, 'y', 'eth0', undefined)).ips[0]!.address, '10.2.0.51/24');

  // DEL is idempotent; CHECK fails once it is gone.
  await ipam.check(r, 'x', 'eth0');
  await ipam.del(r, 'x', 'eth0');
  await ipam.del(r, 'x', 'eth0');
  await t.rejects(ipam.check(r, 'x', 'eth0'), { code: CniCode.NO_LEASE });
  await ipam.del(r, 'never-added', 'eth0');

  // GC keeps the valid attachments and frees the rest, including a claim with no attachment (an orphan).
  await s.cas(
    KEY.ip('r:req', '10.2.0.99'),
    0,
    JSON.stringify({ network: 'req', containerId: 'ghost', ifName: 'eth0', agentId: 'a1', at: new Date().toISOString() }),
  );
  const freed = await ipam.gc({ ...r, 'cni.dev/valid-attachments': [{ containerID: 'y', ifname: 'eth0' }] });
  t.equal(freed, 0, 'no attachment to free but y');
  t.same(
    (await s.list(KEY.ips('r:req'))).map((e) => e.key.split('/').pop()),
    ['10.2.0.51'],
    'the orphan claim is gone, y stays',
  );
  await ipam.gc({ ...r, 'cni.dev/valid-attachments': [] });
  t.same(await s.list(KEY.attsOf('req')), []);
  t.same(await s.list(KEY.ips('r:req')), []);
});

t.test('one group commit per ADD and per DEL: one journal frame, one fdatasync, dual stack included', async (t) => {
  const s = await store(t);
  const ipam = new Ipam(s, view());
  const c = cfg({ network: ['dcos', 'dcos6'] }, 'frames');
  await ipam.add(c, 'warm', 'eth0', 'PORTICO_SERVICE=w;PORTICO_PORTS=80'); // loads the scope caches
  for (let i = 0; i < 5; i++) {
    const before = s.stats().frames;
    const r = await ipam.add(c, `f${i}`, 'eth0', 'PORTICO_SERVICE=w;PORTICO_PORTS=80');
    t.equal(r.ips.length, 2);
    t.equal(s.stats().frames - before, 1, `ADD ${i}: two claims and the attachment in one frame`);
  }
  const before = s.stats().frames;
  await ipam.del(c, 'f0', 'eth0');
  t.equal(s.stats().frames - before, 1, 'DEL: the attachment and both claims in one frame');
  await t.rejects(ipam.check(c, 'f0', 'eth0'), { code: CniCode.NO_LEASE });
  t.equal((await s.list('overlay/ip/')).filter((e) => e.value.toString().includes('"f0"')).length, 0, 'both claims gone');
  const again = await ipam.add(c, 'f0', 'eth0', undefined);
  t.equal(again.ips.length, 2, 'and the container can come back');
});

t.test('start-up reconcile removes claims of ADDs that never committed', async (t) => {
  const s = await store(t);
  const now = new Date().toISOString();
  await s.put(KEY.ip('r:n', '10.0.0.5'), JSON.stringify({ network: 'n', containerId: 'half', ifName: 'eth0', agentId: 'a1', at: now }));
  await s.put(KEY.ip('r:n', '10.0.0.6'), JSON.stringify({ network: 'n', containerId: 'other', ifName: 'eth0', agentId: 'a2', at: now }));
  const ipam = new Ipam(s, view());
  t.equal(await ipam.reconcile(), 1, "ours goes; another agent's recent one may be in flight and stays");
  t.equal((await s.list('overlay/ip/')).length, 1);
});

t.test('the socket protocol refuses junk', async (t) => {
  const s = await store(t);
  const ipam = new Ipam(s, view());
  t.match(await serve('{nope', ipam, silentLogger), { ok: false, error: { code: CniCode.DECODE_FAILURE } });
  t.match(await serve(JSON.stringify({ command: 'ADD', config: { ipam: {} } }), ipam, silentLogger), {
    ok: false,
    error: { code: CniCode.INVALID_CONFIG },
  });
  t.match(await serve(JSON.stringify({ command: 'ADD', config: cfg({ subnet: '10.0.0.0/24' }) }), ipam, silentLogger), {
    ok: false,
    error: { code: CniCode.INVALID_ENV },
  });
  t.ok(new CniFailure(7, 'x').toJSON());
});
