/**
 * `npm run bench -- l4`: the L4 plane beside HAProxy `mode tcp` and direct, in one run on this machine.
 *
 * - Bulk TCP: iperf3 (client → server, and reversed with -R) through Portico's TCP VIP, through HAProxy
 *   (`nbthread 1`, mode tcp, no `check`) and direct to the iperf3 server.
 * - Connection rate: wrk with `Connection: close` (every request a new TCP connection: accept, connect
 *   upstream, a small request and response, close) against nginx `return 200` (or a Node backend when nginx
 *   is absent), through Portico, HAProxy and direct.
 * - UDP datagrams per second: iperf3 -u, 64-byte datagrams, unlimited rate, counted at the receiver,
 *   through Portico's UDP VIP and direct (HAProxy has no UDP load balancing).
 *
 * Portico runs in its own process (this file with `--serve`: the L4 plane on a generated table).
 * Fairness on a small machine: when `taskset` is present and there are ≥2 CPUs, each proxy is pinned to
 * the last CPU and the load generators and backends to the others, so proxies compete with nothing.
 * Peers are measured interleaved (direct, portico, haproxy in each round) so drifting load on a shared
 * machine hits them alike. Medians of BENCH_RUNS (default 3) runs of BENCH_DURATION (default 5) seconds.
 * BENCH_CPU_PROF=<dir> writes a V8 CPU profile of the Portico process there.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { promisify } from 'node:util';
import { ServiceMap } from '../src/model/service-map.js';
import { median, ratio, report, round, say, which } from './lib.js';
import { freePort, startNginx, startNodeScript, startProcess, stopProcess, tmpdir, waitForPort, type Peer } from './peers.js';

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = 50;
const UDP_LEN = 64;
const ROOT = path.join(__dirname, '..');
/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const CLK_TCK = 100;

// ---------------------------------------------------------------------------------------------------
// The Portico side: `node --import tsx bench/l4.ts --serve '<json>'`

interface ServeSpec {
  /** VIP port → backend port, per protocol. */
  tcp: Array<[number, number]>;
  udp: Array<[number, number]>;
}

async function serve(spec: ServeSpec): Promise<void> {
  const { createL4Plane } = await import('../src/l4/index.js');
  const { createLogger } = await import('../src/telemetry/log.js');
  const services: Record<string, import('../src/model/types.js').Service> = {};
  const vips: import('../src/model/types.js').VipEntry[] = [];
  const add = (protocol: 'tcp' | 'udp', vipPort: number, backendPort: number) => {
    const name = `${protocol}${vipPort}`;
    const id = `${name}@bench`;
    services[id] = {
      name,
      id,
      provider: 'bench',
      framework: 'marathon',
      balance: { algorithm: 'roundrobin' },
      vips: [],
      labels: {},
      endpoints: [{ address: '127.0.0.1', port: backendPort, weight: 1, health: 'healthy', labels: {} }],
    };
    vips.push({
      key: `${protocol}/${name}.marathon:${vipPort}`,
      protocol,
      name,
      framework: 'marathon',
      port: vipPort,
      service: id,
      ip: '11.0.0.1',
    });
  };
  for (const [v, b] of spec.tcp) add('tcp', v, b);
  for (const [v, b] of spec.udp) add('udp', v, b);
  const plane = createL4Plane({
    listenAddress: '127.0.0.1',
    logger: createLogger({ level: 'warn', destination: process.stderr }),
    // iperf3's server takes a health-check connect for a test attempt: no active checks (HAProxy has no `check` either).
    options: { healthCheck: { enabled: false, intervalMs: 2_000, timeoutMs: 1_000, rise: 2, fall: 3 } },
  });
  await plane.start({
    version: 1,
    hash: 'bench',
    createdAt: new Date().toISOString(),
    services: ServiceMap.from(services),
    routes: [],
    entrypoints: {},
    vips,
    conflicts: [],
    warnings: [],
    sources: {},
  });
  const st = plane.status();
  if (st.state !== 'serving') throw new Error(`l4 plane not serving: ${st.error}`);
  process.stdout.write('ready\n');
  const stop = () => {
    void plane.stop(0).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------------------------------------------
// Pinning

const CPUS = os.cpus().length;
const HAS_TASKSET = !!which('taskset');
const PIN = HAS_TASKSET && CPUS >= 2;
/** The proxy's CPU, and the rest for clients and backends. */
const PROXY_CPU = String(CPUS - 1);
const OTHER_CPUS = CPUS >= 2 ? `0-${CPUS - 2}` : '0';

function pinned(cpus: string, cmd: string, args: string[]): [string, string[]] {
  return PIN ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

async function startPortico(spec: ServeSpec, waitPorts: number[]): Promise<Peer> {
  const nodeArgs = ['--import', 'tsx'];
  const prof = process.env.BENCH_CPU_PROF;
  if (prof) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(prof)}`);
  const [cmd, args] = pinned(PROXY_CPU, process.execPath, [...nodeArgs, path.join(__dirname, 'l4.ts'), '--serve', JSON.stringify(spec)]);
  const proc: ChildProcess = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d) => {
    err = (err + String(d)).slice(-4000);
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`portico did not start: ${err}`)), 30_000);
    readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`portico exited ${code}: ${err}`));
    });
  });
  for (const p of waitPorts) await waitForPort(p);
  return { name: 'portico', port: waitPorts[0] as number, proc, stop: () => stopProcess(proc, 10_000) };
}

// ---------------------------------------------------------------------------------------------------
// Load generators

async function iperf(port: number, extra: string[]): Promise<Record<string, any>> {
  const [cmd, args] = pinned(OTHER_CPUS, 'iperf3', ['-c', '127.0.0.1', '-p', String(port), '-t', String(DURATION_S), '-J', ...extra]);
  const { stdout } = await run(cmd, args, { timeout: (DURATION_S + 30) * 1000, maxBuffer: 64 << 20 });
  const j = JSON.parse(stdout) as Record<string, any>;
  if (j.error) throw new Error(`iperf3 on ${port}: ${j.error}`);
  return j;
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined where there is none. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Run `fn` and measure the CPU the proxy process `pid` used meanwhile. */
async function withCpu<T>(pid: number | undefined, fn: () => Promise<T>): Promise<{ value: T; cpu: number | undefined }> {
  const before = cpuSeconds(pid);
  const value = await fn();
  const after = cpuSeconds(pid);
  return { value, cpu: before === undefined || after === undefined ? undefined : after - before };
}

async function bulk(port: number, reverse: boolean): Promise<{ gbps: number; bytes: number }> {
  const j = await iperf(port, reverse ? ['-R'] : []);
  return { gbps: round(Number(j.end.sum_received.bits_per_second) / 1e9, 2), bytes: Number(j.end.sum_received.bytes) };
}

async function udpRate(port: number): Promise<{ dps: number; lossPct: number }> {
  const j = await iperf(port, ['-u', '-b', '0', '-l', String(UDP_LEN)]);
  const r = j.end.sum_received;
  return { dps: Math.round(Number(r.bytes) / UDP_LEN / Number(r.seconds)), lossPct: round(Number(r.lost_percent), 1) };
}

async function connRate(port: number): Promise<{ rps: number; requests: number }> {
  const [cmd, args] = pinned(OTHER_CPUS, 'wrk', [
    '-t1',
    `-c${CONNECTIONS}`,
    `-d${DURATION_S}s`,
    '-H',
    'Connection: close',
    `http://127.0.0.1:${port}/`,
  ]);
  const { stdout } = await run(cmd, args, { timeout: (DURATION_S + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? NaN);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} non-2xx responses on port ${port}`);
  if (errors && Number(errors[1]) + Number(errors[4]) > 0) say(`  (wrk socket errors on ${port}: ${errors[0]})`);
  return { rps: Math.round(rps), requests };
}

const NODE_HTTP_BACKEND = `
const net = require('net');
const res = Buffer.from('HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n');
net.createServer((s) => {
  s.on('error', () => {});
  s.once('data', () => s.end(res));
}).listen(Number(process.argv[2]), '127.0.0.1');
`;

// ---------------------------------------------------------------------------------------------------

interface Sample {
  bulk: number;
  bulkR: number;
  conn: number;
  udp?: number;
  udpLoss?: number;
  /** The proxy's CPU per forwarded GB (both bulk runs), and per connection. */
  cpuSecPerGB?: number;
  cpuUsPerConn?: number;
}

export async function main(): Promise<void> {
  const iperfBin = which('iperf3');
  const haproxyBin = which('haproxy');
  const nginxBin = which('nginx');
  const hasWrk = !!which('wrk');
  say(
    `l4 bench: ${RUNS} runs × ${DURATION_S}s, interleaved; ${PIN ? `proxies pinned to CPU ${PROXY_CPU}, clients and backends to ${OTHER_CPUS}` : 'no pinning (taskset missing or 1 CPU)'}`,
  );
  const skipped: Record<string, string> = {};
  if (!iperfBin) {
    report({ bench: 'l4', runs: 0, results: { portico: { skipped: 'iperf3 is not installed (apt-get install iperf3)' } }, ratios: {} });
    return;
  }

  // Backends: an iperf3 server (TCP and UDP on one port), an HTTP responder for the connection rate.
  const iperfPort = await freePort();
  const [ic, ia] = pinned(OTHER_CPUS, 'iperf3', ['-s', '-p', String(iperfPort)]);
  // (its own spawn: iperf3 exits 1 on SIGTERM, which startProcess would report as a failure)
  const iperfServer = spawn(ic, ia, { stdio: 'ignore' });
  await waitForPort(iperfPort);
  const http = nginxBin
    ? await startNginx('l4-backend', nginxBin, 'server { listen 127.0.0.1:PORT; location / { return 200 "ok\\n"; } }')
    : await startNodeScript('l4-backend', NODE_HTTP_BACKEND, await freePort());
  say(`backends: iperf3 -s on ${iperfPort}; ${nginxBin ? 'nginx return 200' : 'node'} on ${http.port}`);
  if (!hasWrk) skipped.connRate = 'wrk is not installed (apt-get install wrk)';

  const pIperf = await freePort();
  const pHttp = await freePort();
  const hIperf = await freePort();
  const hHttp = await freePort();
  let portico: Peer | undefined;
  let haproxy: Peer | undefined;
  const samples = new Map<string, Sample[]>();
  try {
    portico = await startPortico(
      {
        tcp: [
          [pIperf, iperfPort],
          [pHttp, http.port],
        ],
        udp: [[pIperf, iperfPort]],
      },
      [pIperf, pHttp],
    );
    if (haproxyBin) {
      const dir = await tmpdir('haproxy-l4');
      const cfg = path.join(dir, 'haproxy.cfg');
      await writeFile(
        cfg,
        `
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend iperf
  bind 127.0.0.1:${hIperf}
  default_backend iperf
backend iperf
  server s1 127.0.0.1:${iperfPort}
frontend http
  bind 127.0.0.1:${hHttp}
  default_backend http
backend http
  server s1 127.0.0.1:${http.port}
`,
      );
      const [hc, ha] = pinned(PROXY_CPU, haproxyBin, ['-f', cfg, '-db']);
      const proc = startProcess(hc, ha);
      haproxy = {
        name: 'haproxy',
        port: hIperf,
        proc,
        stop: async () => {
          await stopProcess(proc);
          await rm(dir, { recursive: true, force: true });
        },
      };
      await waitForPort(hIperf);
      await waitForPort(hHttp);
    } else {
      skipped.haproxy = 'haproxy is not installed (apt-get install haproxy)';
    }

    const targets: Array<{ name: string; iperf: number; http: number; udp: boolean; pid?: number }> = [
      { name: 'direct', iperf: iperfPort, http: http.port, udp: true },
      { name: 'portico', iperf: pIperf, http: pHttp, udp: true, ...(portico.proc?.pid ? { pid: portico.proc.pid } : {}) },
      ...(haproxy
        ? [{ name: 'haproxy', iperf: hIperf, http: hHttp, udp: false, ...(haproxy.proc?.pid ? { pid: haproxy.proc.pid } : {}) }]
        : []),
    ];
    for (const x of targets) samples.set(x.name, []);
    // Warm-up (JIT, caches), not counted.
    for (const x of targets) {
      await bulk(x.iperf, false).catch(() => undefined);
      if (hasWrk) await connRate(x.http).catch(() => undefined);
    }
    for (let r = 0; r < RUNS; r++) {
      for (const x of targets) {
        const fwd = await withCpu(x.pid, () => bulk(x.iperf, false));
        const rev = await withCpu(x.pid, () => bulk(x.iperf, true));
        const s: Sample = { bulk: fwd.value.gbps, bulkR: rev.value.gbps, conn: NaN };
        if (fwd.cpu !== undefined && rev.cpu !== undefined)
          s.cpuSecPerGB = round((fwd.cpu + rev.cpu) / ((fwd.value.bytes + rev.value.bytes) / 1e9), 3);
        if (hasWrk) {
          const c = await withCpu(x.pid, () => connRate(x.http));
          s.conn = c.value.rps;
          if (c.cpu !== undefined) s.cpuUsPerConn = Math.round((c.cpu * 1e6) / c.value.requests);
        }
        if (x.udp) {
          const u = await udpRate(x.iperf);
          s.udp = u.dps;
          s.udpLoss = u.lossPct;
        }
        (samples.get(x.name) as Sample[]).push(s);
        const cpu = s.cpuUsPerConn !== undefined ? ` [proxy CPU ${s.cpuSecPerGB} s/GB, ${s.cpuUsPerConn} µs/conn]` : '';
        say(
          `run ${r + 1} ${x.name.padEnd(8)} bulk ${s.bulk} Gbit/s, reverse ${s.bulkR} Gbit/s, ${s.conn} conn/s${s.udp !== undefined ? `, udp ${s.udp} datagrams/s (${s.udpLoss}% lost)` : ''}${cpu}`,
        );
      }
    }
  } finally {
    await portico?.stop();
    await haproxy?.stop();
    await http.stop();
    await stopProcess(iperfServer);
  }

  const results: Record<string, Record<string, unknown> | { skipped: string }> = {};
  for (const [name, ss] of samples) {
    const entry: Record<string, unknown> = {
      bulkGbps: round(median(ss.map((s) => s.bulk)), 2),
      bulkReverseGbps: round(median(ss.map((s) => s.bulkR)), 2),
      connPerSec: hasWrk ? Math.round(median(ss.map((s) => s.conn))) : null,
    };
    if (ss[0]?.udp !== undefined) {
      entry.udpDatagramsPerSec = Math.round(median(ss.map((s) => s.udp as number)));
      entry.udpLossPct = round(median(ss.map((s) => s.udpLoss as number)), 1);
    }
    if (ss[0]?.cpuUsPerConn !== undefined) {
      entry.cpuUsPerConn = Math.round(median(ss.map((x) => x.cpuUsPerConn as number)));
      entry.cpuSecPerGB = round(median(ss.map((x) => x.cpuSecPerGB as number)), 3);
    }
    entry.samples = ss;
    results[name] = entry;
  }
  if (skipped.haproxy) results.haproxy = { skipped: skipped.haproxy };
  const get = (peer: string, k: string) => (results[peer] as Record<string, number> | undefined)?.[k];
  // Per-round ratios (portico and HAProxy measured back to back): steadier than ratios of medians when the
  // machine's load drifts; and CPU per unit of work, which load on the other CPUs hardly moves at all.
  const perRound = (k: 'bulk' | 'bulkR' | 'conn') => {
    const p = samples.get('portico') ?? [];
    const h = samples.get('haproxy') ?? [];
    const rs = p.map((x, i) => ratio(x[k], h[i]?.[k])).filter((x): x is number => x !== null);
    return rs.length ? round(median(rs), 3) : null;
  };
  const ratios = {
    bulkVsHaproxyPerRound: perRound('bulk'),
    bulkReverseVsHaproxyPerRound: perRound('bulkR'),
    connRateVsHaproxyPerRound: perRound('conn'),
    /** HAProxy's CPU per connection over Portico's: the connection-rate ratio if both were CPU-bound. */
    connCpuEfficiencyVsHaproxy: ratio(get('haproxy', 'cpuUsPerConn'), get('portico', 'cpuUsPerConn')),
    bulkCpuEfficiencyVsHaproxy: ratio(get('haproxy', 'cpuSecPerGB'), get('portico', 'cpuSecPerGB')),
    bulkVsHaproxy: ratio(get('portico', 'bulkGbps'), get('haproxy', 'bulkGbps')),
    bulkReverseVsHaproxy: ratio(get('portico', 'bulkReverseGbps'), get('haproxy', 'bulkReverseGbps')),
    connRateVsHaproxy: ratio(get('portico', 'connPerSec'), get('haproxy', 'connPerSec')),
    bulkVsDirect: ratio(get('portico', 'bulkGbps'), get('direct', 'bulkGbps')),
    connRateVsDirect: ratio(get('portico', 'connPerSec'), get('direct', 'connPerSec')),
    udpVsDirect: ratio(get('portico', 'udpDatagramsPerSec'), get('direct', 'udpDatagramsPerSec')),
  };
  for (const [name, r] of Object.entries(results)) {
    if ('skipped' in r) say(`${name.padEnd(8)} skipped: ${r.skipped}`);
    else
      say(
        `${name.padEnd(8)} median: bulk ${r.bulkGbps} Gbit/s, reverse ${r.bulkReverseGbps} Gbit/s, ${r.connPerSec} conn/s${r.udpDatagramsPerSec !== undefined ? `, udp ${r.udpDatagramsPerSec} datagrams/s` : ''}${r.cpuUsPerConn !== undefined ? `; proxy CPU ${r.cpuSecPerGB} s/GB, ${r.cpuUsPerConn} µs/conn` : ''}`,
      );
  }
  say(`ratios: ${JSON.stringify(ratios)}`);
  report({
    bench: 'l4',
    runs: RUNS,
    results,
    ratios,
    goals: {
      bulkVsHaproxy: { goal: '≥0.75', met: ratios.bulkVsHaproxy === null ? null : ratios.bulkVsHaproxy >= 0.75 },
      connRateVsHaproxy: { goal: '≥0.5', met: ratios.connRateVsHaproxy === null ? null : ratios.connRateVsHaproxy >= 0.5 },
    },
  });
}

if (require.main === module && process.argv[2] === '--serve') {
  serve(JSON.parse(process.argv[3] ?? '{}') as ServeSpec).catch((err: Error) => {
    process.stderr.write(`${err.stack}\n`);
    process.exit(1);
  });
}
