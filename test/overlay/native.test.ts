/**
 * The native relay (native/portico-cni.c) against the Node plugin, call by call: the same environment
 * and stdin through both must give the same exit code, stdout and stderr (PORTICO_CNI_TIMING's line
 * aside). And where the relay should answer through the daemon it must really have done so: its
 * fallback (PORTICO_CNI_FALLBACK) is a script that leaves a mark and then runs the Node plugin, so each
 * case also says whether the relay ran the Node plugin or not.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { CniCode } from '../../src/overlay/cni/protocol.js';
import { NATIVE_PLUGIN, NODE_PLUGIN, cni, startDaemon, tmpdir, type CniCall, type CniRun, type Daemon } from './helpers.js';

const dir = tmpdir('native');
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The relay's fallback for these tests: marks $PORTICO_TEST_MARK, then runs the Node plugin. */
const RECORDER = path.join(dir, 'fallback-recorder');
fs.writeFileSync(RECORDER, `#!/bin/sh\n: > "$PORTICO_TEST_MARK"\nexec ${JSON.stringify(NODE_PLUGIN)} "$@"\n`, { mode: 0o755 });

const TIMING_RE = /^portico-cni: timing \w+ [\d.]+\n/gm;
const untimed = (s: string) => s.replace(TIMING_RE, '');

let marks = 0;

interface Both {
  node: CniRun;
  relay: CniRun;
  fellBack: boolean;
}

/** One call through the Node plugin, then the same through the relay. */
async function both(call: Omit<CniCall, 'plugin'>): Promise<Both> {
  const node = await cni({ ...call, plugin: NODE_PLUGIN });
  const mark = path.join(dir, `mark-${marks++}`);
  const relay = await cni({
    ...call,
    plugin: NATIVE_PLUGIN,
    env: { ...call.env, PORTICO_CNI_FALLBACK: RECORDER, PORTICO_TEST_MARK: mark },
  });
  return { node, relay, fellBack: fs.existsSync(mark) };
}

/** The two runs print the same and exit alike; the relay did (not) run the Node plugin. */
async function same(
  t: Test,
  what: string,
  call: Omit<CniCall, 'plugin'>,
  expect: { fallback: boolean; code?: number; errCode?: number },
): Promise<Both> {
  const r = await both(call);
  t.equal(r.relay.code, r.node.code, `${what}: same exit code (${r.node.code})`);
  t.equal(r.relay.stdout, r.node.stdout, `${what}: same stdout`);
  t.equal(untimed(r.relay.stderr), untimed(r.node.stderr), `${what}: same stderr`);
  t.equal(
    r.fellBack,
    expect.fallback,
    `${what}: ${expect.fallback ? 'ran the Node plugin' : 'answered through the daemon, no Node plugin'}`,
  );
  if (expect.code !== undefined) t.equal(r.node.code, expect.code, `${what}: exit ${expect.code}`);
  if (expect.errCode !== undefined) t.equal(r.node.out?.code, expect.errCode, `${what}: CNI error ${expect.errCode}`);
  return r;
}

/** A stand-in daemon: `answer(request)` is written back (undefined: never answers); closed at teardown. */
async function fakeDaemon(t: Test, name: string, answer: (req: string) => string | undefined): Promise<string> {
  const socket = path.join(dir, `${name}.sock`);
  const conns = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (!got.includes('\n')) return;
      const a = answer(got);
      if (a !== undefined) s.end(a);
    });
  });
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const c of conns) c.destroy();
        server.close(() => r());
      }),
  );
  return socket;
}

let d: Daemon;
t.before(async () => {
  d = await startDaemon(path.join(dir, 'd'));
});
t.teardown(() => d?.close());

const conf = (ipam: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: 'nat',
  type: 'bridge',
  ...extra,
  ipam: { type: 'portico-cni', socket: d.socket, ranges: [[{ subnet: '10.11.0.0/24' }]], ...ipam },
});
const addEnv = { containerId: 'c1', ifName: 'eth0', netns: '/var/run/netns/x' };

t.test('VERSION, answered by the daemon through the relay', async (t) => {
  const env = { PORTICO_IPAM_SOCKET: d.socket };
  for (const v of ['0.4.0', '1.0.0', '1.1.0', '0.3.1']) {
    await same(t, `VERSION ${v}`, { command: 'VERSION', config: { cniVersion: v }, env }, { fallback: false, code: 0 });
  }
  await same(t, 'VERSION, empty stdin', { command: 'VERSION', config: '', env }, { fallback: false, code: 0 });
  await same(t, 'VERSION, whitespace only', { command: 'VERSION', config: ' \n\t', env }, { fallback: false, code: 0 });
  await same(t, 'VERSION, no cniVersion', { command: 'VERSION', config: '{}', env }, { fallback: false, code: 0 });
  await same(t, 'VERSION, a full config (socket from ipam.socket)', { command: 'VERSION', config: conf() }, { fallback: false, code: 0 });
  await same(
    t,
    'VERSION, no daemon: the Node plugin answers',
    { command: 'VERSION', config: { cniVersion: '1.0.0' }, env: { PORTICO_IPAM_SOCKET: path.join(dir, 'nobody.sock') } },
    { fallback: true, code: 0 },
  );
});

t.test("environment errors, decided by the daemon with the plugin's checks", async (t) => {
  const c = conf();
  const cases: Array<[string, Omit<CniCall, 'plugin'>]> = [
    ['CNI_COMMAND not set', { command: undefined, config: c }],
    ['CNI_COMMAND empty', { command: '', config: c }],
    ['unknown CNI_COMMAND', { command: 'FROB', config: c }],
    ['lower-case command', { command: 'add', config: c, ...addEnv }],
    ['ADD without anything', { command: 'ADD', config: c }],
    ['ADD without CNI_NETNS', { command: 'ADD', config: c, containerId: 'c', ifName: 'eth0' }],
    ['ADD with an empty CNI_CONTAINERID', { command: 'ADD', config: c, ...addEnv, containerId: '' }],
    ['CHECK without CNI_IFNAME', { command: 'CHECK', config: c, containerId: 'c', netns: '/x' }],
    ['DEL without CNI_IFNAME', { command: 'DEL', config: c, containerId: 'c' }],
    ['GC without CNI_PATH', { command: 'GC', config: c }],
    ['bad CNI_CONTAINERID', { command: 'DEL', config: c, containerId: '-x', ifName: 'eth0' }],
    ['CNI_CONTAINERID with a quote and unicode', { command: 'ADD', config: c, ...addEnv, containerId: 'a"b\\é' }],
    ['CNI_IFNAME with a slash', { command: 'ADD', config: c, ...addEnv, ifName: 'a/b' }],
    ['CNI_IFNAME too long', { command: 'ADD', config: c, ...addEnv, ifName: 'abcdefghijklmnop' }],
    ['CNI_IFNAME ..', { command: 'DEL', config: c, containerId: 'c', ifName: '..' }],
    ['CNI_IFNAME with a tab', { command: 'DEL', config: c, containerId: 'c', ifName: 'et\th0' }],
  ];
  for (const [what, call] of cases) await same(t, what, call, { fallback: false, code: 1, errCode: CniCode.INVALID_ENV });
});

t.test('configuration errors', async (t) => {
  const env = { PORTICO_IPAM_SOCKET: d.socket };
  const relayed: Array<[string, unknown, number | undefined]> = [
    ['empty stdin', '', CniCode.DECODE_FAILURE],
    ['whitespace only', '  \n', CniCode.DECODE_FAILURE],
    ['an array', '[1,2]', CniCode.DECODE_FAILURE],
    ['a string', '"ipam"', CniCode.DECODE_FAILURE],
    ['a number', '-1.5e3', CniCode.DECODE_FAILURE],
    ['null', 'null', CniCode.DECODE_FAILURE],
    ['true', 'true', CniCode.DECODE_FAILURE],
    ['unsupported cniVersion', { ...conf(), cniVersion: '0.3.1' }, CniCode.INCOMPATIBLE_VERSION],
    ['cniVersion not a string (no version to check: served)', { ...conf(), cniVersion: 1 }, undefined],
    ['no name', { cniVersion: '1.1.0', ipam: { socket: d.socket } }, CniCode.INVALID_CONFIG],
    ['empty name', { ...conf(), name: '' }, CniCode.INVALID_CONFIG],
    ['no ipam', { cniVersion: '1.0.0', name: 'n' }, CniCode.INVALID_CONFIG],
    ['ipam a string', { cniVersion: '1.0.0', name: 'n', ipam: 'portico-cni' }, CniCode.INVALID_CONFIG],
    ['ipam an array', { cniVersion: '1.0.0', name: 'n', ipam: [{ socket: d.socket }] }, CniCode.INVALID_CONFIG],
    ['ipam null', { cniVersion: '1.0.0', name: 'n', ipam: null }, CniCode.INVALID_CONFIG],
    ['bad ranges', conf({ ranges: [[{ subnet: '10.0.0.0/24', gateway: '11.0.0.1' }]] }), CniCode.INVALID_CONFIG],
  ];
  for (const [what, config, code] of relayed) {
    const r = await same(t, what, { command: 'ADD', config, ...addEnv, containerId: 'cfg', env }, { fallback: false });
    t.equal(r.node.out?.code, code, code === undefined ? `${what}: success` : `${what}: CNI error ${code}`);
  }
  // Not JSON the relay can scan, or an ipam.socket it cannot use: the Node plugin answers.
  const long = `/tmp/${'x'.repeat(200)}.sock`;
  const fallback: Array<[string, unknown, number | undefined]> = [
    ['not JSON', '{"cniVersion": "1.1.0", ', CniCode.DECODE_FAILURE],
    ['not JSON at all', 'nope', CniCode.DECODE_FAILURE],
    ['trailing garbage', `${JSON.stringify(conf())} x`, CniCode.DECODE_FAILURE],
    ['two documents', `${JSON.stringify(conf())}${JSON.stringify(conf())}`, CniCode.DECODE_FAILURE],
    ['a byte-order mark', `\ufeff${JSON.stringify(conf())}`, CniCode.DECODE_FAILURE],
    ['a raw tab inside a string', '{"cniVersion":"1.1.0","name":"a\tb","ipam":{}}', CniCode.DECODE_FAILURE],
    ['a bad escape', '{"cniVersion":"1.1.0","name":"a\\qb","ipam":{}}', CniCode.DECODE_FAILURE],
    ['a leading zero', '{"cniVersion":"1.1.0","name":"n","mtu":01,"ipam":{}}', CniCode.DECODE_FAILURE],
    ['a single quote', "{'cniVersion':'1.1.0'}", CniCode.DECODE_FAILURE],
    [
      'invalid UTF-8',
      Buffer.concat([
        Buffer.from('{"cniVersion":"1.1.0","name":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from(`","ipam":{"socket":${JSON.stringify(d.socket)}}}`),
      ]),
      CniCode.INVALID_CONFIG,
    ],
    ['ipam.socket a number', conf({ socket: 42 }), CniCode.INVALID_CONFIG],
    ['ipam.socket empty', conf({ socket: '' }), CniCode.INVALID_CONFIG],
    ['ipam.socket an object', conf({ socket: { path: d.socket } }), CniCode.INVALID_CONFIG],
    ['ipam.socket null', conf({ socket: null }), CniCode.INVALID_CONFIG],
    // (node's pipe connect stops at the NUL: the Node plugin reaches the daemon, so the relay lets it)
    ['ipam.socket with a NUL', conf({ socket: `${d.socket}\u0000x` }), undefined],
    ['ipam.socket with a lone surrogate', conf({ socket: `${d.socket}\ud800` }), CniCode.TRY_AGAIN_LATER],
    ['ipam.socket too long for sun_path', conf({ socket: long }), CniCode.TRY_AGAIN_LATER],
  ];
  for (const [what, config, code] of fallback) {
    const r = await same(t, what, { command: 'ADD', config, ...addEnv, containerId: 'cfg', env }, { fallback: true });
    t.equal(r.node.out?.code, code, code === undefined ? `${what}: success` : `${what}: CNI error ${code}`);
  }
});

t.test('tricky JSON: the relay finds the socket JSON.parse would', async (t) => {
  const sock = JSON.stringify(d.socket);
  // "/" as \/ and the first letter as a \u escape: the same path, decoded.
  const escaped = `"\\u${d.socket.charCodeAt(0).toString(16).padStart(4, '0')}${d.socket.slice(1).replaceAll('/', '\\/')}"`;
  const nobody = JSON.stringify(path.join(dir, 'nobody.sock'));
  const range = '"ranges":[[{"subnet":"10.12.0.0/24"}]]';
  const texts: Array<[string, string]> = [
    ['escaped socket path', `{"cniVersion":"1.1.0","name":"tj1","ipam":{"type":"portico-cni","socket":${escaped},${range}}}`],
    ['escaped keys', `{"cniVersion":"1.1.0","n\\u0061me":"tj2","ip\\u0061m":{"s\\u006fcket":${sock},${range}}}`],
    [
      '"socket" keys elsewhere',
      `{"socket":${nobody},"cniVersion":"1.1.0","name":"tj3","args":{"ipam":{"socket":${nobody}}},"ipam":{"opts":{"socket":${nobody}},"list":[{"socket":${nobody}}],"socket":${sock},${range}},"x":{"ipam":{"socket":${nobody}}}}`,
    ],
    [
      'repeated "ipam": the last one counts',
      `{"cniVersion":"1.1.0","name":"tj4","ipam":{"socket":${nobody}},"ipam":{"socket":${sock},${range}}}`,
    ],
    ['repeated "socket": the last one counts', `{"cniVersion":"1.1.0","name":"tj5","ipam":{"socket":${nobody},"socket":${sock},${range}}}`],
    [
      '"ipam" key with a NUL is another key',
      `{"cniVersion":"1.1.0","name":"tj6","ipam\\u0000":{"socket":${nobody}},"ipam":{"socket":${sock},${range}}}`,
    ],
    [
      'unicode in values',
      `{"cniVersion":"1.1.0","name":"réseau-🚀-网络-\\u00e9\\ud83d\\ude80","note":"tab\\there \\"quoted\\" back\\\\slash \\u0001 \\u2028","ipam":{"socket":${sock},${range}}}`,
    ],
    [
      'numbers and literals',
      `{"cniVersion":"1.1.0","name":"tj7","mtu":1420,"f":-0.5e-3,"big":1e400,"z":-0,"t":true,"n":null,"a":[],"o":{},"ipam":{"socket":${sock},${range}}}`,
    ],
    ['whitespace everywhere', `\r\n {\t"cniVersion" : "1.1.0" ,\n "name" : "tj8" , "ipam" : { "socket" : ${sock} , ${range} } } \n`],
    [
      'deep nesting elsewhere',
      `{"cniVersion":"1.1.0","name":"tj9","deep":${'['.repeat(200)}${']'.repeat(200)},"ipam":{"socket":${sock},${range}}}`,
    ],
  ];
  let i = 0;
  for (const [what, config] of texts) {
    JSON.parse(config); // (the case itself is valid JSON)
    const r = await same(t, what, { command: 'ADD', config, ...addEnv, containerId: `tj${i++}` }, { fallback: false, code: 0 });
    t.match(r.node.out, { ips: [{ address: /^10\.12\.0\.\d+\/24$/ }] }, `${what}: an address`);
  }
  const r = await same(
    t,
    'deeper than the relay scans',
    {
      command: 'ADD',
      config: `{"cniVersion":"1.1.0","name":"tj10","deep":${'['.repeat(600)}${']'.repeat(600)},"ipam":{"socket":${sock},${range}}}`,
      ...addEnv,
      containerId: 'deep',
    },
    { fallback: true, code: 0 },
  );
  t.ok(r.relay.out.ips, 'the Node plugin answered it');
});

t.test('ADD, CHECK, DEL, GC, STATUS against the daemon', async (t) => {
  const c = conf({ ranges: [[{ subnet: '10.13.0.0/24', rangeStart: '10.13.0.2', rangeEnd: '10.13.0.3' }]] }, { name: 'life' });
  const args = 'IgnoreUnknown=1;PORTICO_SERVICE=web;X="q\\"\tz é"';
  await same(t, 'STATUS', { command: 'STATUS', config: c }, { fallback: false, code: 0 });
  const add = await same(
    t,
    'ADD (the relay repeats it: the same lease)',
    { command: 'ADD', config: c, ...addEnv, args, env: { PORTICO_CNI_TIMING: '1' } },
    { fallback: false, code: 0 },
  );
  t.match(add.relay.stderr, /^portico-cni: timing ADD \d+\.\d{3}\n$/, "PORTICO_CNI_TIMING: the relay's own timing line");
  t.match(add.node.out, { cniVersion: '1.1.0', ips: [{ address: '10.13.0.2/24' }] });
  await same(t, 'CHECK', { command: 'CHECK', config: { ...c, prevResult: add.node.out }, ...addEnv }, { fallback: false, code: 0 });
  await same(t, 'ADD another', { command: 'ADD', config: c, ...addEnv, containerId: 'c2' }, { fallback: false, code: 0 });
  await same(
    t,
    'ADD: pool exhausted',
    { command: 'ADD', config: c, ...addEnv, containerId: 'c3' },
    { fallback: false, code: 1, errCode: CniCode.EXHAUSTED },
  );
  await same(t, 'STATUS: exhausted', { command: 'STATUS', config: c }, { fallback: false, code: 1, errCode: CniCode.NOT_AVAILABLE });
  await same(
    t,
    'ADD a specific address in use',
    { command: 'ADD', config: conf({}, { name: 'spec' }), ...addEnv, containerId: 's1', args: 'IP=10.11.0.9' },
    { fallback: false, code: 0 },
  );
  await same(
    t,
    'ADD the same address for another',
    { command: 'ADD', config: conf({}, { name: 'spec' }), ...addEnv, containerId: 's2', args: 'IP=10.11.0.9' },
    { fallback: false, code: 1, errCode: CniCode.ADDRESS_IN_USE },
  );
  const gc = await same(
    t,
    'GC',
    { command: 'GC', config: { ...c, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] }, cniPath: '/usr/lib/cni' },
    { fallback: false, code: 0 },
  );
  t.equal(gc.relay.stdout, '', 'GC prints nothing');
  t.same(
    d.overlay
      .leases()
      .filter((l) => l.network === 'life')
      .map((l) => l.containerId),
    ['c1'],
    'GC released c2',
  );
  await same(t, 'DEL', { command: 'DEL', config: c, containerId: 'c1', ifName: 'eth0' }, { fallback: false, code: 0 });
  await same(t, 'DEL again', { command: 'DEL', config: c, containerId: 'c1', ifName: 'eth0' }, { fallback: false, code: 0 });
  await same(t, 'CHECK after DEL', { command: 'CHECK', config: c, ...addEnv }, { fallback: false, code: 1, errCode: CniCode.NO_LEASE });
  await same(
    t,
    'v0.4.0 ADD',
    { command: 'ADD', config: { ...conf({}, { name: 'old' }), cniVersion: '0.4.0' }, ...addEnv },
    { fallback: false, code: 0 },
  );
  await same(
    t,
    'a 300 KB GC',
    {
      command: 'GC',
      cniPath: '/usr/lib/cni',
      config: {
        ...conf({}, { name: 'old' }),
        'cni.dev/valid-attachments': Array.from({ length: 5000 }, (_, i) => ({
          containerID: `container-with-a-long-id-${i}`,
          ifname: 'eth0',
        })),
      },
    },
    { fallback: false, code: 0 },
  );
  t.same(d.overlay.leases().filter((l) => l.network === 'old').length, 0, 'and it released what was not listed');
});

t.test('no daemon: code 11 (STATUS 50) from the Node plugin', async (t) => {
  const nobody = path.join(dir, 'nobody.sock');
  const c = conf({ socket: nobody });
  await same(t, 'ADD', { command: 'ADD', config: c, ...addEnv }, { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER });
  await same(
    t,
    'DEL',
    { command: 'DEL', config: c, containerId: 'c1', ifName: 'eth0' },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
  await same(t, 'STATUS', { command: 'STATUS', config: c }, { fallback: true, code: 1, errCode: CniCode.NOT_AVAILABLE });
  await same(
    t,
    'ADD, socket from PORTICO_IPAM_SOCKET',
    { command: 'ADD', config: { cniVersion: '1.0.0', name: 'n', ipam: {} }, ...addEnv, env: { PORTICO_IPAM_SOCKET: nobody } },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
  fs.writeFileSync(nobody, '');
  t.teardown(() => fs.rmSync(nobody, { force: true }));
  await same(
    t,
    'ADD, a file nobody listens on',
    { command: 'ADD', config: c, ...addEnv },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
});

t.test('daemons that do not answer as a relay expects: the Node plugin runs', async (t) => {
  const garbage = await fakeDaemon(t, 'garbage', () => 'garbage\n');
  await same(
    t,
    'garbage',
    { command: 'ADD', config: conf({ socket: garbage }), ...addEnv },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
  const result = { cniVersion: '1.1.0', ips: [{ address: '10.99.0.2/24' }], routes: [], dns: {} };
  const older = await fakeDaemon(
    t,
    'older',
    (req) =>
      (JSON.parse(req).relay
        ? JSON.stringify({ ok: false, error: { code: CniCode.DECODE_FAILURE, msg: 'undecodable request from the plugin' } })
        : JSON.stringify({ ok: true, result })) + '\n',
  );
  const r = await same(
    t,
    'an older daemon (no relay requests)',
    { command: 'ADD', config: conf({ socket: older }), ...addEnv },
    { fallback: true, code: 0 },
  );
  t.same(r.relay.out, result, "the older daemon's answer, through the Node plugin");
  await same(
    t,
    'an older daemon: VERSION',
    { command: 'VERSION', config: '', env: { PORTICO_IPAM_SOCKET: older } },
    { fallback: true, code: 0 },
  );
  const cut = await fakeDaemon(t, 'cut', () => 'PCR1 0 100 0\n{"cniVersion"');
  await same(
    t,
    'a reply cut short',
    { command: 'ADD', config: conf({ socket: cut }), ...addEnv },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
  const badHeader = await fakeDaemon(t, 'badheader', () => 'PCR1 0 x 0\n');
  await same(
    t,
    'a bad reply header',
    { command: 'ADD', config: conf({ socket: badHeader }), ...addEnv },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
  const mute = await fakeDaemon(t, 'mute', () => undefined);
  await same(
    t,
    'no answer within PORTICO_CNI_TIMEOUT_MS',
    { command: 'ADD', config: conf({ socket: mute }), ...addEnv, env: { PORTICO_CNI_TIMEOUT_MS: '300' } },
    { fallback: true, code: 1, errCode: CniCode.TRY_AGAIN_LATER },
  );
  // A relay reply is printed as it comes: byte counts (é is two), exit code.
  const odd = await fakeDaemon(t, 'odd', () => 'PCR1 3 4 7\nout\nerr\né\n');
  const mark = path.join(dir, 'mark-odd');
  const o = await cni({
    command: 'ADD',
    config: conf({ socket: odd }),
    ...addEnv,
    plugin: NATIVE_PLUGIN,
    env: { PORTICO_CNI_FALLBACK: RECORDER, PORTICO_TEST_MARK: mark },
  });
  t.same(
    [o.code, o.stdout, o.stderr, fs.existsSync(mark)],
    [3, 'out\n', 'err\né\n', false],
    'a framed reply: stdout, stderr and exit code as framed',
  );
});

t.test('large stdin', async (t) => {
  // Beyond the daemon's request limit (1 MiB): the daemon cuts the relay's line off, the Node plugin runs
  // and refuses the config itself, saying why (code 7: retrying would not mend it), whatever the timing.
  const big = { ...conf(), pad: 'x'.repeat(1_200_000) };
  const r = await same(
    t,
    'a 1.2 MB config',
    { command: 'ADD', config: big, ...addEnv, containerId: 'big' },
    { fallback: true, code: 1, errCode: CniCode.INVALID_CONFIG },
  );
  t.match(r.node.out?.msg, /too large/, 'the error says the configuration is too large');
  // Under the limit as written, over it as sent (re-serialized, 1e20 is 21 digits): the daemon plans the
  // relay's call as the Node plugin plans its own, so both refuse it alike — no lease the Node plugin
  // could never have got.
  const base = JSON.stringify(conf({}, { name: 'exp' }));
  const inflated = `${base.slice(0, -1)},"pad":[${Array(60_000).fill('1e20').join(',')}]}`;
  t.ok(
    inflated.length < 1 << 20 && JSON.stringify(JSON.parse(inflated)).length > 1 << 20,
    'the config is under 1 MiB, its re-serialization over',
  );
  await same(
    t,
    'a config that grows past 1 MiB as sent',
    { command: 'ADD', config: inflated, ...addEnv, containerId: 'exp' },
    { fallback: false, code: 1, errCode: CniCode.INVALID_CONFIG },
  );
  t.notOk(
    d.overlay.leases().some((l) => l.containerId === 'exp'),
    'and no lease was made',
  );
  // Beyond the relay's own limit (16 MiB): the Node plugin gets all of it, the part read and the rest.
  const huge = `{"cniVersion":"1.1.0","name":"huge","pad":"${'y'.repeat(17 << 20)}`;
  await same(
    t,
    '17 MiB, unterminated',
    { command: 'ADD', config: huge, ...addEnv },
    { fallback: true, code: 1, errCode: CniCode.DECODE_FAILURE },
  );
});

t.test('when the Node plugin cannot be run either', async (t) => {
  const c = conf({ socket: path.join(dir, 'nobody.sock') });
  const r = await cni({
    command: 'ADD',
    config: c,
    ...addEnv,
    plugin: NATIVE_PLUGIN,
    env: { PORTICO_CNI_FALLBACK: path.join(dir, 'no-such-plugin') },
  });
  t.equal(r.code, 1);
  t.match(r.out, {
    cniVersion: '1.1.0',
    code: CniCode.TRY_AGAIN_LATER,
    msg: /cannot reach the Portico daemon and cannot run its Node plugin/,
    details: /no-such-plugin: No such file/,
  });
  t.match(r.stderr, /^portico-cni: ADD: cannot run the Node plugin/);
  const loop = await cni({ command: 'ADD', config: c, ...addEnv, plugin: NATIVE_PLUGIN, env: { PORTICO_CNI_FALLBACK: NATIVE_PLUGIN } });
  t.equal(loop.code, 1, 'a fallback that is the relay itself: no loop');
  t.match(loop.out, { code: CniCode.TRY_AGAIN_LATER, details: /Too many levels of symbolic links|ELOOP/ });
});

t.test('an environment the Node plugin would read otherwise: the Node plugin runs', async (t) => {
  // A name twice in the environment: node sees the last (bin/portico-cni runs it through /bin/sh, which
  // keeps the last entry), getenv() the first. No shell or node can make such an environment: a small C
  // program does, appending $DUP_ENV to its environment and running $DUP_EXEC.
  const dupEnv = path.join(dir, 'dup-env');
  const dupSrc = `${dupEnv}.c`;
  fs.writeFileSync(
    dupSrc,
    `#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    (void)argc;
    size_t n = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 2, sizeof *env);
    memcpy(env, environ, n * sizeof *env);
    env[n] = getenv("DUP_ENV");
    execve(getenv("DUP_EXEC"), argv, env);
    return 127;
}
`,
  );
  const cc = spawnSync(process.env.CC || 'cc', ['-o', dupEnv, dupSrc], { encoding: 'utf8' });
  t.equal(cc.status, 0, `the helper builds ${cc.stderr}`);
  const add: Omit<CniCall, 'plugin'> = { command: 'ADD', config: conf({}, { name: 'dup' }), ...addEnv, containerId: 'dup1' };
  const cases: Array<[string, string, Omit<CniCall, 'plugin'>]> = [
    ['CNI_COMMAND twice (ADD, then DEL)', 'CNI_COMMAND=DEL', add],
    ['CNI_CONTAINERID twice', 'CNI_CONTAINERID=-bad', add],
    [
      'PORTICO_IPAM_SOCKET twice',
      `PORTICO_IPAM_SOCKET=${d.socket}`,
      { command: 'VERSION', config: '', env: { PORTICO_IPAM_SOCKET: path.join(dir, 'nobody.sock') } },
    ],
  ];
  for (const [what, dup, call] of cases) {
    const node = await cni({ ...call, plugin: dupEnv, env: { ...call.env, DUP_EXEC: NODE_PLUGIN, DUP_ENV: dup } });
    const mark = path.join(dir, `mark-${marks++}`);
    const relay = await cni({
      ...call,
      plugin: dupEnv,
      env: { ...call.env, DUP_EXEC: NATIVE_PLUGIN, DUP_ENV: dup, PORTICO_CNI_FALLBACK: RECORDER, PORTICO_TEST_MARK: mark },
    });
    t.same([relay.code, relay.stdout, relay.stderr], [node.code, node.stdout, node.stderr], `${what}: the same as the Node plugin`);
    t.ok(fs.existsSync(mark), `${what}: the Node plugin ran`);
  }
  const del = await cni({ ...add, plugin: dupEnv, env: { DUP_EXEC: NODE_PLUGIN, DUP_ENV: 'CNI_COMMAND=DEL' } });
  t.same([del.code, del.stdout], [0, ''], 'the Node plugin did the last CNI_COMMAND (DEL: no output)');
  t.same(d.overlay.leases().filter((l) => l.network === 'dup').length, 0, 'and nobody added a lease');

  // PORTICO_CNI_TIMEOUT_MS: the Node plugin gives setTimeout Number(value), which runs after 1 ms when
  // that is not 1..2^31-1 ("", "soon", 0, 1e10): it then reports code 11 where the relay would have
  // waited 30 s and printed the daemon's answer. A daemon that answers only the relay shows which ran.
  const relayOnly = await fakeDaemon(t, 'relayonly', (req) => (JSON.parse(req).relay ? 'PCR1 0 3 0\n{}\n' : undefined));
  const timeoutCall = (v: string): Omit<CniCall, 'plugin'> => ({
    command: 'ADD',
    config: conf({ socket: relayOnly }),
    ...addEnv,
    env: { PORTICO_CNI_TIMEOUT_MS: v },
  });
  for (const v of ['soon', '', '0', '0.5', '-5', ' 300', '300 ', '3e2', '0x12c']) {
    await same(t, `PORTICO_CNI_TIMEOUT_MS=${JSON.stringify(v)}`, timeoutCall(v), {
      fallback: true,
      code: 1,
      errCode: CniCode.TRY_AGAIN_LATER,
    });
  }
  for (const v of ['Infinity', '99999999999']) {
    // (node also warns on stderr, with its pid: no same())
    const r = await both(timeoutCall(v));
    t.same(
      [r.fellBack, r.relay.code, r.relay.out?.code, r.node.out?.code],
      [true, 1, CniCode.TRY_AGAIN_LATER, CniCode.TRY_AGAIN_LATER],
      `PORTICO_CNI_TIMEOUT_MS=${v}: the Node plugin ran, code 11 both`,
    );
  }
  for (const v of ['2500', '2500.5', '2147483647']) {
    const mark = path.join(dir, `mark-${marks++}`);
    const r = await cni({
      command: 'ADD',
      config: conf({ socket: relayOnly }),
      ...addEnv,
      plugin: NATIVE_PLUGIN,
      env: { PORTICO_CNI_TIMEOUT_MS: v, PORTICO_CNI_FALLBACK: RECORDER, PORTICO_TEST_MARK: mark },
    });
    t.same([r.code, r.stdout, fs.existsSync(mark)], [0, '{}\n', false], `PORTICO_CNI_TIMEOUT_MS=${v}: the relay's`);
  }
});

t.test('a closed stdout when even the Node plugin cannot run: exit 1, not SIGPIPE', async (t) => {
  // A FIFO whose only reader is gone: every write to it is EPIPE (and SIGPIPE).
  const fifo = path.join(dir, 'no-reader');
  execFileSync('mkfifo', [fifo]);
  const rfd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wfd = fs.openSync(fifo, fs.constants.O_WRONLY);
  fs.closeSync(rfd);
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    CNI_COMMAND: 'VERSION',
    PORTICO_IPAM_SOCKET: path.join(dir, 'nobody.sock'),
    PORTICO_CNI_FALLBACK: path.join(dir, 'no-such-plugin'),
  };
  const child = spawn(NATIVE_PLUGIN, [], { env, stdio: ['pipe', wfd, 'pipe'] });
  fs.closeSync(wfd);
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  child.stdin!.end('{}');
  const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.on('close', (c, s) => r([c, s])));
  t.same([code, signal], [1, null], 'exit 1');
  t.match(stderr, /^portico-cni: VERSION: cannot run the Node plugin/, 'and the line on stderr');
});
