/**
 * The `portico-cni` executable as a runtime runs it (one process per call, env + stdin): VERSION, error
 * codes, STATUS, exhaustion, parallel ADDs, kill -9 of plugins during a burst, kill -9 of the daemon.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import t from 'tap';
import { CniCode } from '../../src/overlay/cni/protocol.js';
import { KEY } from '../../src/overlay/types.js';
import { withTimeout } from '../helpers/wait.js';
import { ROOT, cni, cniSpawn, startDaemon, tmpdir, type CniRun } from './helpers.js';

const dir = tmpdir('cni');
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const conf = (socket: string, ipam: Record<string, unknown>, name = 'net', v = '1.1.0') => ({
  cniVersion: v,
  name,
  type: 'bridge',
  ipam: { type: 'portico-cni', socket, ...ipam },
});
const add = (config: unknown, containerId: string, extra: { args?: string } = {}) =>
  cni({ command: 'ADD', config, containerId, ifName: 'eth0', netns: '/var/run/netns/none', ...extra });

t.test("VERSION echoes the caller's cniVersion and lists 0.4.0, 1.0.0, 1.1.0", async (t) => {
  for (const v of ['0.4.0', '1.0.0', '1.1.0']) {
    const r = await cni({ command: 'VERSION', config: { cniVersion: v } });
    t.equal(r.code, 0);
    t.same(r.out, { cniVersion: v, supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
  }
});

t.test("errors: the spec's JSON on stdout, codes 4, 6, 7, 1, 11, 50", async (t) => {
  const sock = path.join(dir, 'nobody.sock');
  const base = conf(sock, { subnet: '10.0.0.0/24' });
  const cases: Array<[string, Promise<CniRun>, number, RegExp]> = [
    ['no CNI_COMMAND', cni({ command: '', config: base }), CniCode.INVALID_ENV, /CNI_COMMAND/],
    ['unknown command', cni({ command: 'FROB', config: base }), CniCode.INVALID_ENV, /FROB/],
    [
      'ADD without CNI_CONTAINERID',
      cni({ command: 'ADD', config: base, ifName: 'eth0', netns: '/x' }),
      CniCode.INVALID_ENV,
      /CNI_CONTAINERID/,
    ],
    ['ADD without CNI_NETNS', cni({ command: 'ADD', config: base, ifName: 'eth0', containerId: 'c' }), CniCode.INVALID_ENV, /CNI_NETNS/],
    ['bad container id', cni({ command: 'DEL', config: base, ifName: 'eth0', containerId: '-x' }), CniCode.INVALID_ENV, /CNI_CONTAINERID/],
    ['GC without CNI_PATH', cni({ command: 'GC', config: base }), CniCode.INVALID_ENV, /CNI_PATH/],
    [
      'undecodable config',
      cni({ command: 'ADD', config: '{"cniVersion": "1.1.0", ', containerId: 'c', ifName: 'eth0', netns: '/x' }),
      CniCode.DECODE_FAILURE,
      /decode/,
    ],
    [
      'no ipam',
      cni({ command: 'ADD', config: { cniVersion: '1.1.0', name: 'n', type: 'bridge' }, containerId: 'c', ifName: 'eth0', netns: '/x' }),
      CniCode.INVALID_CONFIG,
      /ipam/,
    ],
    [
      'unsupported version',
      cni({ command: 'ADD', config: { ...base, cniVersion: '0.3.1' }, containerId: 'c', ifName: 'eth0', netns: '/x' }),
      CniCode.INCOMPATIBLE_VERSION,
      /0\.3\.1/,
    ],
    ['daemon down: ADD', add(base, 'c'), CniCode.TRY_AGAIN_LATER, /unavailable/],
    ['daemon down: STATUS', cni({ command: 'STATUS', config: base }), CniCode.NOT_AVAILABLE, /unavailable/],
  ];
  for (const [what, p, code, re] of cases) {
    const r = await p;
    t.equal(r.code, 1, `${what}: exit 1`);
    t.match(r.out, { code, msg: re }, what);
    t.type(r.out?.cniVersion, 'string', `${what}: cniVersion in the error`);
  }
  const bad = await cni({ command: 'ADD', config: { ...base, cniVersion: '1.0.0' }, containerId: 'c', ifName: 'eth0', netns: '/x' });
  t.equal(bad.out.cniVersion, '1.0.0', "the error echoes the caller's version");
  t.match(bad.stderr, /portico-cni: ADD c eth0/, 'and logs on stderr');
});

t.test('with the daemon: STATUS, ADD/CHECK/DEL, exhaustion, 20 parallel ADDs, bad ranges', async (t) => {
  const d = await startDaemon(path.join(dir, 'd1'));
  t.teardown(() => d.close());
  const small = conf(d.socket, { ranges: [[{ subnet: '10.5.0.0/29' }]] }, 'small');
  t.equal((await cni({ command: 'STATUS', config: small })).code, 0, 'STATUS: can serve');
  const got: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await add(small, `s${i}`);
    t.equal(r.code, 0, r.stdout);
    t.same(Object.keys(r.out).sort(), ['cniVersion', 'dns', 'ips', 'routes'], 'abbreviated IPAM result');
    got.push(r.out.ips[0].address);
  }
  t.same(got, ['10.5.0.2/29', '10.5.0.3/29', '10.5.0.4/29', '10.5.0.5/29', '10.5.0.6/29']);
  const full = await add(small, 's5');
  t.equal(full.code, 1);
  t.match(full.out, { cniVersion: '1.1.0', code: CniCode.EXHAUSTED, msg: /no free address left in small/ });
  const st = await cni({ command: 'STATUS', config: small });
  t.match(st.out, { code: CniCode.NOT_AVAILABLE }, 'STATUS: 50 when the pool is exhausted');
  t.equal((await cni({ command: 'DEL', config: small, containerId: 's0', ifName: 'eth0' })).code, 0);
  t.equal((await cni({ command: 'DEL', config: small, containerId: 's0', ifName: 'eth0' })).code, 0, 'DEL twice: still success');
  t.equal((await cni({ command: 'CHECK', config: small, containerId: 's0', ifName: 'eth0', netns: '/x' })).out.code, CniCode.NO_LEASE);
  t.equal(
    (
      await cni({
        command: 'CHECK',
        config: { ...small, prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.5.0.3/29' }] } },
        containerId: 's1',
        ifName: 'eth0',
        netns: '/x',
      })
    ).code,
    0,
  );
  t.equal((await add(small, 's6')).out.ips[0].address, '10.5.0.2/29', 'the freed address is reused once the rest is gone');

  const v04 = await add(conf(d.socket, { subnet: '10.6.0.0/24' }, 'old', '0.4.0'), 'o1');
  t.match(v04.out, { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.6.0.2/24', gateway: '10.6.0.1' }] });

  const badCfg = await add(conf(d.socket, { ranges: [[{ subnet: '10.0.0.0/24', gateway: '11.0.0.1' }]] }, 'bad'), 'b');
  t.match(badCfg.out, { code: CniCode.INVALID_CONFIG, msg: /not inside/ });

  const big = conf(d.socket, { network: 'dcos' }, 'par');
  const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => add(big, `p${i}`)));
  t.same(
    runs.map((r) => r.code),
    Array(20).fill(0),
    '20 parallel plugin processes all succeed',
  );
  const addrs = runs.map((r) => r.out.ips[0].address as string);
  t.equal(new Set(addrs).size, 20, '20 distinct addresses');
  t.ok(
    addrs.every((a) => a.startsWith('9.0.0.') && a.endsWith('/24')),
    "all in the agent's /24 of dcos",
  );
  t.match(runs[0]!.out.routes, [{ dst: '9.0.0.0/8', gw: '9.0.0.1' }]);

  const dual = await add(conf(d.socket, { network: ['dcos', 'dcos6'] }, 'dual'), 'x', { args: 'IgnoreUnknown=1;IP=9.0.0.200' });
  t.match(
    dual.out.ips,
    [{ address: '9.0.0.200/24' }, { address: /^fd01:b::[0-9a-f:]+\/80$/ }],
    'dual stack: one v4 (the one asked for) and one v6',
  );
  t.equal(d.overlay.leases().filter((l) => l.network === 'par').length, 20, 'leases() sees them');
});

t.test('kill -9 of plugin processes during a burst: no duplicate, GC reclaims the orphans', async (t) => {
  const d = await startDaemon(path.join(dir, 'd2'));
  t.teardown(() => d.close());
  const c = conf(d.socket, { ranges: [[{ subnet: '10.7.0.0/24' }]] }, 'burst');
  const N = 30;
  const kids: Array<{ id: string; child: ChildProcess; killed: boolean; done: Promise<{ code: number | null; out: string }> }> = [];
  // Every third plugin is killed at a random moment (most before they reach the daemon); every third
  // other one the moment its lease commits in the store (the daemon finished, the plugin has not
  // printed yet): an orphan the runtime never heard of.
  const killAtCommit = new Set<string>();
  const off = d.overlay.onChange((leases) => {
    for (const l of leases) {
      const k = kids.find((x) => x.id === l.containerId);
      if (k && killAtCommit.has(k.id) && !k.killed) k.killed = k.child.kill('SIGKILL');
    }
  });
  t.teardown(off);
  for (let i = 0; i < N; i++) {
    const child = cniSpawn({ command: 'ADD', config: c, containerId: `k${i}`, ifName: 'eth0', netns: '/x' });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
    });
    const done = new Promise<{ code: number | null; out: string }>((resolve) => child.on('close', (code) => resolve({ code, out })));
    const k = { id: `k${i}`, child, killed: false, done };
    kids.push(k);
    if (i % 3 === 0)
      setTimeout(
        () => {
          k.killed = child.kill('SIGKILL');
        },
        20 + ((i * 37) % 300),
      );
    if (i % 3 === 1) killAtCommit.add(k.id);
  }
  const results = await Promise.all(kids.map((k) => k.done));
  const acked = kids.filter((_, i) => results[i]!.code === 0).map((k, _) => k.id);
  t.ok(acked.length >= N / 3, `${acked.length} acknowledged`);
  t.ok(
    kids.some((k) => k.killed),
    'some plugins were killed',
  );
  const atts = await d.store.list(KEY.attsOf('burst'));
  const claims = await d.store.list(KEY.ips('r:burst'));
  const all = atts.flatMap((e) => (JSON.parse(e.value.toString()) as { ips: Array<{ address: string }> }).ips.map((i) => i.address));
  t.equal(new Set(all).size, all.length, 'no address in two attachments');
  t.ok(claims.length >= acked.length && claims.length <= N, 'at most one claim per ADD');
  for (const k of kids.filter((_, i) => results[i]!.code === 0)) {
    const r = await cni({ command: 'CHECK', config: c, containerId: k.id, ifName: 'eth0', netns: '/x' });
    t.equal(r.code, 0, `acknowledged ${k.id} holds its lease`);
  }
  t.ok(claims.length > acked.length, `orphans to reclaim: ${claims.length - acked.length}`);
  const gc = await cni({
    command: 'GC',
    config: { ...c, 'cni.dev/valid-attachments': acked.map((id) => ({ containerID: id, ifname: 'eth0' })) },
    cniPath: '/usr/lib/cni',
  });
  t.equal(gc.code, 0, gc.stdout);
  t.equal(gc.stdout, '', 'GC prints nothing on success');
  t.equal((await d.store.list(KEY.ips('r:burst'))).length, acked.length, 'GC reclaimed every orphan, kept every valid lease');
  t.equal((await d.store.list(KEY.attsOf('burst'))).length, acked.length);
});

function startDaemonProcess(dataDir: string, socket: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'fixtures', 'daemon.ts'), dataDir, socket], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const rl = readline.createInterface({ input: child.stdout! });
  return withTimeout(
    new Promise((resolve, reject) => {
      rl.on('line', (l) => {
        if (l === 'ready') resolve(child);
      });
      child.on('exit', (code) => reject(new Error(`daemon exited ${code}`)));
    }),
    20_000,
    'the daemon fixture to be ready',
  );
}

t.test('kill -9 of the daemon: every acknowledged lease survives, no duplicate after restart', async (t) => {
  const data = path.join(dir, 'd3');
  const socket = path.join(dir, 'd3.sock');
  let daemon = await startDaemonProcess(data, socket);
  t.teardown(() => {
    daemon.kill('SIGKILL');
  });
  const c = conf(socket, { network: ['dcos', 'dcos6'] }, 'crash');
  const first = await Promise.all(Array.from({ length: 12 }, (_, i) => add(c, `before${i}`)));
  // Kill the daemon as soon as the first ADD of the burst is acknowledged: the others are in flight.
  const burst = Array.from({ length: 16 }, (_, i) =>
    add(c, `during${i}`).then((r) => {
      if (r.code === 0) daemon.kill('SIGKILL');
      return r;
    }),
  );
  const during = await Promise.all(burst);
  t.ok(
    during.every((r) => r.code === 0 || r.out?.code === CniCode.TRY_AGAIN_LATER),
    'a failed ADD says: try again later (11)',
  );
  if (daemon.exitCode === null && daemon.signalCode === null) await new Promise((r) => daemon.once('exit', r));
  t.comment(`${during.filter((r) => r.code === 0).length} of ${during.length} ADDs acknowledged before the kill`);
  daemon = await startDaemonProcess(data, socket);
  const acked = [...first.map((r, i) => ({ r, id: `before${i}` })), ...during.map((r, i) => ({ r, id: `during${i}` }))].filter(
    (x) => x.r.code === 0,
  );
  t.ok(acked.length >= 12);
  for (const { r, id } of acked) {
    const chk = await cni({ command: 'CHECK', config: { ...c, prevResult: r.out }, containerId: id, ifName: 'eth0', netns: '/x' });
    t.equal(chk.code, 0, `${id}: acknowledged lease kept (${chk.stdout.trim()})`);
  }
  const more = await Promise.all(Array.from({ length: 8 }, (_, i) => add(c, `after${i}`)));
  const v4 = [...acked.map((a) => a.r.out.ips[0].address), ...more.map((r) => r.out.ips[0].address)];
  const v6 = [...acked.map((a) => a.r.out.ips[1].address), ...more.map((r) => r.out.ips[1].address)];
  t.equal(new Set(v4).size, v4.length, 'no IPv4 duplicate across the crash');
  t.equal(new Set(v6).size, v6.length, 'no IPv6 duplicate across the crash');
});
