/**
 * `npm run bench -- l7`: the L7 ingress beside HAProxy, nginx and http-proxy, on one core and on two, in
 * one run on this machine.
 *
 * The same backend for all (nginx `return 200`, one worker; a Node raw-socket backend if nginx is
 * absent), the same clients (wrk when installed, and autocannon), keep-alive, 50 connections, RUNS runs of
 * DURATION seconds each (after a 2 s warm-up per client), medians. Then new-connection TLS handshakes per
 * second through Portico and HAProxy (`openssl s_time -new`).
 *
 * Variants, each a 1-thread and a 2-thread shape of the same peer, so scaling across cores is measured:
 *   portico, portico-auto              `portico up`, access log on: `workers: 1` and `workers: auto` (= 2 here)
 *   portico-nolog, portico-nolog-auto  the same with the access log off, as the peers (which log nothing)
 *   haproxy, haproxy-2                 `nbthread 1` and `nbthread 2`
 *   nginx, nginx-2                     `worker_processes 1` and `2` (upstream keepalive)
 *   http-proxy                         one Node process (keep-alive agent, maxSockets 256): no 2-core shape
 *   direct                             wrk straight to the backend: what the client side costs alone
 * The `workers` key lands with the multi-process Portico (issue 15). Until this build takes it (asked with
 * `portico validate`), the auto variants are reported as skipped ("workers key not supported by this
 * build") and portico / portico-nolog run without the key: that build is one process, the 1-worker shape.
 * With the key, `workers: 1` is written out (a supervisor, a control process and one worker).
 *
 * Pinning (bench/pin.ts, printed in the output): 1-thread servers alone on CPU 1 with the load generator
 * (wrk, autocannon, openssl) on CPU 0; 2-thread servers on CPUs 0-1 with the load generator floating over
 * both (pinned to CPU 0 it left CPU 1 20–30% idle and made every 2-thread peer slower than its 1-thread
 * shape); the backend and this harness on CPU 0 always. So the 2-thread shape gets CPU 1 and what the client
 * side leaves of CPU 0: the scaling ratios (2-thread ÷ 1-thread) are capped well below 2×, alike for every
 * peer at a given load, and a peer whose 1-thread shape already needs most of CPU 0 for its client side
 * (HAProxy, nginx: wrk + backend ~0.9 core) has almost nothing to gain on this machine. CPU per request is
 * the steadier comparison.
 *
 * Per variant: req/s, p50, p99, CPU per request (user and system, from /proc: the whole process tree —
 * nginx's master and workers, Portico's supervisor, control and workers), the cores the server used, the
 * cores the load generator and the backend used (what they left of CPU 0), per-CPU busy (other work on
 * the machine included) and its softirq part (loopback packet work, charged to no process), the cores
 * other work on the machine took meanwhile (otherCores: noise, warned about when material), what bounded
 * the run (limit: server, client, all CPUs, neither — from which CPUs were ≥90% busy), and the processes
 * and threads the server ran as (the shape actually served). Ratios: the scaling of every peer that has
 * both shapes, and Portico against each peer at equal thread counts.
 *
 * Time: at the defaults (BENCH_RUNS=3, BENCH_DURATION=5, both clients, every variant) about 7 minutes,
 * ~5.5 while the auto variants are skipped; BENCH_RUNS=1 BENCH_DURATION=2 about 1.5 minutes.
 * For quick experiments: BENCH_L7_PEERS=portico-nolog,portico-nolog-auto,haproxy,haproxy-2 and
 * BENCH_L7_CLIENTS=wrk run a subset (the ratios that need a missing variant are null);
 * BENCH_PORTICO_NODE_ARGS passes node flags to Portico.
 */
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { makeCert, median, ratio, report, round, say, which } from './lib.js';
import {
  cpuSeconds,
  freePort,
  porticoWorkersKey,
  PorticoStartError,
  reapedChildrenCpuSeconds,
  startHaproxy,
  startNginx,
  startNodeScript,
  startPorticoUp,
  tmpdir,
  type Peer,
} from './peers.js';
import {
  busyBetween,
  CLIENT_CPUS,
  CPUS,
  cpuTimes,
  describePinning,
  limitOf,
  loadCpus,
  noiseWarning,
  otherCores,
  pinned,
  pinSelf,
  SATURATED,
  serverCpus,
} from './pin.js';

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = 50;
const WARMUP_S = 2;

interface Sample {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  cpuUserUs?: number;
  cpuSysUs?: number;
  /** CPU seconds the server's process tree used per second of the run. */
  cores?: number;
  /** CPU seconds per second of the run of the load generator, and of the backend (the client side, CPU 0). */
  clientCores?: number;
  backendCores?: number;
  /** Cores busy with work that is none of the bench's (other processes on a shared machine): noise. */
  otherCores?: number;
  /** Each CPU's busy fraction during the run (every process on the machine, other work included), and its softirq part. */
  busy?: number[];
  softirq?: number[];
}

const NODE_BACKEND = `
const net = require('net');
const body = 'ok\\n';
const res = Buffer.from('HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: ' + body.length + '\\r\\n\\r\\n' + body);
net.createServer((s) => {
  s.setNoDelay(true);
  let carry = '';
  s.on('data', (d) => {
    carry += d.toString('latin1');
    let i;
    while ((i = carry.indexOf('\\r\\n\\r\\n')) >= 0) { carry = carry.slice(i + 4); s.write(res); }
  });
  s.on('error', () => {});
}).listen(Number(process.argv[2]), '127.0.0.1');
`;

const HTTP_PROXY_PEER = `
const http = require('http');
const httpProxy = require('http-proxy');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: 'http://127.0.0.1:' + process.argv[3], agent });
proxy.on('error', (e, req, res) => { try { res.writeHead(502); res.end(); } catch {} });
http.createServer((req, res) => proxy.web(req, res)).listen(Number(process.argv[2]), '127.0.0.1');
`;

function parseWrkLatency(text: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function wrk(port: number, cpus: string | undefined, seconds = DURATION_S): Promise<Sample> {
  const [cmd, args] = pinned(cpus, 'wrk', ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`]);
  const { stdout } = await run(cmd, args, { timeout: (seconds + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? NaN);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} non-2xx responses on port ${port}`);
  return { rps, p50Ms: parseWrkLatency(stdout, '50'), p99Ms: parseWrkLatency(stdout, '99'), requests };
}

async function autocannon(port: number, cpus: string | undefined, seconds = DURATION_S): Promise<Sample> {
  const bin = path.join(__dirname, '..', 'node_modules', 'autocannon', 'autocannon.js');
  const [cmd, args] = pinned(cpus, process.execPath, [
    bin,
    '-c',
    String(CONNECTIONS),
    '-d',
    String(seconds),
    '-j',
    `http://127.0.0.1:${port}/`,
  ]);
  const { stdout } = await run(cmd, args, { timeout: (seconds + 30) * 1000, maxBuffer: 64 << 20 });
  const j = JSON.parse(stdout) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
  };
  if (j.non2xx > 0 || j.errors > 0) throw new Error(`autocannon saw ${j.non2xx} non-2xx and ${j.errors} errors on port ${port}`);
  return { rps: j.requests.average, p50Ms: j.latency.p50, p99Ms: j.latency.p99, requests: j.requests.total };
}

function summarise(samples: Sample[]): Record<string, number | number[]> {
  const out: Record<string, number | number[]> = {
    rps: Math.round(median(samples.map((s) => s.rps))),
    p50Ms: round(median(samples.map((s) => s.p50Ms))),
    p99Ms: round(median(samples.map((s) => s.p99Ms))),
  };
  const user = samples.map((s) => s.cpuUserUs).filter((x): x is number => x !== undefined);
  const sys = samples.map((s) => s.cpuSysUs).filter((x): x is number => x !== undefined);
  if (user.length) out.cpuUserUsPerReq = round(median(user), 1);
  if (sys.length) out.cpuSysUsPerReq = round(median(sys), 1);
  for (const k of ['cores', 'clientCores', 'backendCores', 'otherCores'] as const) {
    const xs = samples.map((s) => s[k]).filter((x): x is number => x !== undefined);
    if (xs.length) out[k] = round(median(xs), 2);
  }
  for (const [k, name] of [
    ['busy', 'cpuBusy'],
    ['softirq', 'cpuSoftirq'],
  ] as const) {
    const xs = samples.map((s) => s[k]).filter((x): x is number[] => x !== undefined);
    if (xs.length) out[name] = (xs[0] as number[]).map((_, i) => round(median(xs.map((b) => b[i] as number)), 2));
  }
  return out;
}

/**
 * Portico as an operator runs it (`portico up`, compiled), one plain entrypoint and a TLS one when given a
 * certificate. `workers`: the top-level key, written only when this build takes it.
 */
async function startPortico(
  name: string,
  backendPort: number,
  accessLog: boolean,
  workers: 'auto' | 1 | undefined,
  cpus: string | undefined,
  tls?: { certFile: string; keyFile: string },
): Promise<Peer & { tlsPort?: number }> {
  const port = await freePort();
  const tlsPort = tls ? await freePort() : undefined;
  const config = `
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
entrypoints:
  web: { listen: 127.0.0.1:${port} }
${tls ? `  websecure: { listen: 127.0.0.1:${tlsPort}, tls: { certificates: [ { certFile: ${tls.certFile}, keyFile: ${tls.keyFile} } ] } }` : ''}
services:
  backend:
    endpoints: [ { address: 127.0.0.1, port: ${backendPort} } ]
routes:
  - { entrypoint: web, host: "*", path: /, service: backend }
${tls ? '  - { entrypoint: websecure, host: "*", path: /, service: backend }' : ''}
`;
  // Access log on: as an operator runs it (log level info unless PORTICO_LOG_LEVEL says otherwise).
  const env = accessLog
    ? { PORTICO_LOG_LEVEL: process.env.PORTICO_LOG_LEVEL ?? 'info', PORTICO_ACCESS_LOG: undefined }
    : { PORTICO_LOG_LEVEL: 'warn', PORTICO_ACCESS_LOG: 'off' };
  // BENCH_PORTICO_NODE_ARGS: node flags for the Portico process only (e.g. GC sizing experiments).
  const nodeArgs = (process.env.BENCH_PORTICO_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const peer: Peer & { tlsPort?: number } = await startPorticoUp({ name, config, readyPort: port, workers, env, nodeArgs, cpus });
  if (tlsPort !== undefined) peer.tlsPort = tlsPort;
  return peer;
}

async function handshakes(port: number, cpus: string | undefined): Promise<number> {
  const [cmd, args] = pinned(cpus, 'openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(DURATION_S)]);
  const { stdout } = await run(cmd, args, { timeout: (DURATION_S + 30) * 1000 });
  const m = /([\d.]+) connections\/user sec/.exec(stdout) ?? /(\d+) connections in [\d.]+ real seconds/.exec(stdout);
  const real = /(\d+) connections in ([\d.]+)s?;? ?.*real/.exec(stdout);
  if (real) return round(Number(real[1]) / Number(real[2]), 1);
  return m ? Number(m[1]) : NaN;
}

/** A peer in one shape: how many threads (workers, processes) serve, and how it starts. */
interface Variant {
  name: string;
  /** Threads / workers / processes that serve: 1 or 2 (0: `direct`, no proxy). */
  threads: number;
  shape: string;
  /** Its TLS port is measured with openssl s_time too. */
  tls?: boolean;
  /** Runs with the `workers` key: when `portico up` refuses it, reported as skipped instead of failing the bench. */
  workersKey?: boolean;
  start: () => Promise<Peer & { tlsPort?: number }>;
}

const NO_WORKERS_KEY = 'workers key not supported by this build';

export async function main(): Promise<void> {
  say('building dist/ (Portico runs compiled, as npm start runs it)');
  await run(process.execPath, [
    path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    path.join(__dirname, '..', 'tsconfig.build.json'),
  ]);
  pinSelf();
  const nginxBin = which('nginx') ?? which('/usr/sbin/nginx');
  const haproxyBin = which('haproxy') ?? which('/usr/sbin/haproxy');
  const hasWrk = !!which('wrk');
  const hasOpenssl = !!which('openssl');
  const clients: Array<[string, (port: number, cpus: string | undefined, seconds?: number) => Promise<Sample>]> = [];
  if (hasWrk) clients.push(['wrk', wrk]);
  clients.push(['autocannon', autocannon]);
  // BENCH_L7_CLIENTS / BENCH_L7_PEERS (comma-separated names): a subset, for quick experiments.
  const only = (v: string | undefined) => (v ? new Set(v.split(',').map((s) => s.trim())) : undefined);
  const onlyClients = only(process.env.BENCH_L7_CLIENTS);
  if (onlyClients) clients.splice(0, clients.length, ...clients.filter(([n]) => onlyClients.has(n)));
  const workersKey = await porticoWorkersKey();

  const backend = nginxBin
    ? await startNginx('backend', nginxBin, `server { listen 127.0.0.1:PORT; location / { return 200 "ok\\n"; } }`, { cpus: CLIENT_CPUS })
    : await startNodeScript('backend', NODE_BACKEND, await freePort(), [], { cpus: CLIENT_CPUS });

  const certDir = await tmpdir('certs');
  const cert = hasOpenssl ? await makeCert(certDir, 'bench.example.test') : undefined;
  if (cert) await writeFile(path.join(certDir, 'haproxy.pem'), cert.pem);

  const variants: Variant[] = [];
  const skipped: Record<string, Record<string, unknown>> = {};
  variants.push({
    name: 'direct',
    threads: 0,
    shape: 'no proxy: the client straight to the backend (CPU figures are the backend’s)',
    start: async () => ({ name: 'direct', port: backend.port, ...(backend.proc ? { proc: backend.proc } : {}), stop: async () => {} }),
  });
  const portico = (name: string, accessLog: boolean, workers: 1 | 'auto', withTls: boolean): void => {
    const threads = workers === 1 ? 1 : 2;
    if (workers === 'auto' && !workersKey.supported) {
      skipped[name] = { skipped: NO_WORKERS_KEY, detail: workersKey.detail };
      return;
    }
    const key = workersKey.supported ? workers : undefined;
    const shape =
      (workers === 'auto'
        ? `portico up, workers: auto (${CPUS} cores)`
        : key === undefined
          ? 'portico up without the workers key: this build is one process, the 1-worker shape'
          : 'portico up, workers: 1') + (accessLog ? ', access log on' : ', access log off');
    variants.push({
      name,
      threads,
      shape,
      tls: withTls,
      workersKey: key !== undefined,
      start: () => startPortico(name, backend.port, accessLog, key, serverCpus(threads), withTls ? cert : undefined),
    });
  };
  portico('portico', true, 1, true);
  portico('portico-auto', true, 'auto', true);
  portico('portico-nolog', false, 1, false);
  portico('portico-nolog-auto', false, 'auto', false);
  if (haproxyBin) {
    for (const threads of [1, 2]) {
      const name = threads === 1 ? 'haproxy' : `haproxy-${threads}`;
      variants.push({
        name,
        threads,
        shape: `haproxy nbthread ${threads}`,
        tls: true,
        start: async () => {
          const tlsPort = cert ? await freePort() : undefined;
          const p = await startHaproxy(
            haproxyBin,
            (port) => `
frontend fe
  bind 127.0.0.1:${port}
${tlsPort ? `  bind 127.0.0.1:${tlsPort} ssl crt ${certDir}/haproxy.pem` : ''}
  default_backend be
backend be
  http-reuse always
  server s1 127.0.0.1:${backend.port}
`,
            { name, threads, cpus: serverCpus(threads) },
          );
          return tlsPort ? { ...p, tlsPort } : p;
        },
      });
    }
  } else for (const n of ['haproxy', 'haproxy-2']) skipped[n] = { skipped: 'haproxy is not installed (apt-get install haproxy)' };
  if (nginxBin) {
    for (const workers of [1, 2]) {
      const name = workers === 1 ? 'nginx' : `nginx-${workers}`;
      variants.push({
        name,
        threads: workers,
        shape: `nginx worker_processes ${workers}, upstream keepalive`,
        start: () =>
          startNginx(
            `${name}-proxy`,
            nginxBin,
            `
  upstream be { server 127.0.0.1:${backend.port}; keepalive 64; }
  server { listen 127.0.0.1:PORT; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
            { workers, cpus: serverCpus(workers) },
          ),
      });
    }
  } else for (const n of ['nginx', 'nginx-2']) skipped[n] = { skipped: 'nginx is not installed (apt-get install nginx-light)' };
  variants.push({
    name: 'http-proxy',
    threads: 1,
    shape: 'one Node process (no threads or workers: it has no 2-core shape)',
    start: async () => startNodeScript('http-proxy', HTTP_PROXY_PEER, await freePort(), [String(backend.port)], { cpus: serverCpus(1) }),
  });
  const onlyPeers = only(process.env.BENCH_L7_PEERS);
  if (onlyPeers) {
    variants.splice(0, variants.length, ...variants.filter((v) => onlyPeers.has(v.name)));
    for (const name of Object.keys(skipped)) if (!onlyPeers.has(name)) delete skipped[name];
  }

  const tlsRuns = cert ? variants.filter((v) => v.tls).length : 0;
  const estimateS =
    variants.length * clients.length * (WARMUP_S + RUNS * DURATION_S) +
    tlsRuns * RUNS * DURATION_S +
    variants.filter((v) => v.name.startsWith('portico')).length * 3;
  say(
    `l7 bench: ${RUNS} runs × ${DURATION_S}s, ${CONNECTIONS} connections, keep-alive; clients: ${clients.map((c) => c[0]).join(', ')}; ` +
      `variants: ${variants.map((v) => v.name).join(', ')}; about ${Math.round(estimateS / 6) / 10} minutes`,
  );
  say(describePinning());
  if (CPUS !== 2) say(`note: ${CPUS} CPUs: workers: auto means ${CPUS} workers, pinned like the 2-thread peers`);
  say(`backend: ${nginxBin ? 'nginx return 200' : 'node raw-socket'} on ${backend.port} (client side)`);
  say(`workers key: ${workersKey.supported ? 'supported by this build' : `refused by this build (${workersKey.detail.split('\n')[0]})`}`);
  for (const [name, s] of Object.entries(skipped)) say(`${name.padEnd(18)} skipped: ${String(s.skipped)}`);

  // All peers run at once (idle while not measured) and the runs are interleaved — run 1 of every peer,
  // then run 2 … — so a noisy spell on this shared machine hits every peer alike, not one of them.
  const results: Record<string, Record<string, unknown>> = {};
  const started: Array<{ v: Variant; peer: Peer & { tlsPort?: number } }> = [];
  try {
    for (const v of variants) {
      try {
        started.push({ v, peer: await v.start() });
      } catch (err) {
        if (!(v.workersKey && err instanceof PorticoStartError)) throw err;
        skipped[v.name] = {
          skipped: /workers/.test(err.message) ? NO_WORKERS_KEY : 'portico up failed with the workers key',
          detail: err.message,
        };
        say(`${v.name.padEnd(18)} skipped: ${err.message}`);
      }
    }
    const samples = new Map<string, Sample[]>();
    const hs = new Map<string, number[]>();
    const seen = new Map<string, { processes: number; threads: number }>();
    for (const { v, peer } of started)
      for (const [, fn] of clients) await fn(peer.port, loadCpus(v.threads), WARMUP_S).catch(() => undefined);
    for (let i = 0; i < RUNS; i++) {
      for (const { v, peer } of started) {
        for (const [client, fn] of clients) {
          const key = `${v.name}\0${client}`;
          const t0 = cpuTimes();
          const before = cpuSeconds(peer.proc?.pid);
          const b0 = cpuSeconds(backend.proc?.pid);
          const l0 = reapedChildrenCpuSeconds();
          const w0 = performance.now();
          const sample = await fn(peer.port, loadCpus(v.threads));
          const wall = (performance.now() - w0) / 1000;
          const l1 = reapedChildrenCpuSeconds();
          const b1 = cpuSeconds(backend.proc?.pid);
          const after = cpuSeconds(peer.proc?.pid);
          const busy = busyBetween(t0, cpuTimes());
          if (l0 !== undefined && l1 !== undefined) sample.clientCores = round((l1 - l0) / wall, 2);
          if (b0 && b1) sample.backendCores = round((b1.user + b1.sys - b0.user - b0.sys) / wall, 2);
          if (before && after && sample.requests > 0) {
            sample.cpuUserUs = round(((after.user - before.user) * 1e6) / sample.requests, 1);
            sample.cpuSysUs = round(((after.sys - before.sys) * 1e6) / sample.requests, 1);
            sample.cores = round((after.user + after.sys - before.user - before.sys) / wall, 2);
            seen.set(v.name, { processes: after.processes, threads: after.threads });
          }
          if (busy) Object.assign(sample, busy);
          const other = otherCores(busy, sample.cores, sample.clientCores, v.name === 'direct' ? 0 : sample.backendCores);
          if (other !== undefined) sample.otherCores = other;
          samples.set(key, [...(samples.get(key) ?? []), sample]);
          say(`run ${i + 1} ${v.name.padEnd(18)} ${client.padEnd(10)} ${JSON.stringify(sample)}`);
        }
        if (peer.tlsPort !== undefined) hs.set(v.name, [...(hs.get(v.name) ?? []), await handshakes(peer.tlsPort, loadCpus(v.threads))]);
      }
    }
    for (const { v } of started) {
      const entry: Record<string, unknown> = {
        shape: v.shape,
        threads: v.threads,
        cpus: v.threads ? (serverCpus(v.threads) ?? 'any') : CLIENT_CPUS,
      };
      const s = seen.get(v.name);
      if (s) Object.assign(entry, { processes: s.processes, osThreads: s.threads });
      for (const [client] of clients) {
        const sum = summarise(samples.get(`${v.name}\0${client}`) ?? []);
        const limit = limitOf(v.threads, sum.cpuBusy as number[] | undefined, sum.clientCores as number | undefined);
        entry[client] = limit ? { ...sum, limit } : sum;
      }
      const h = hs.get(v.name);
      if (h) entry.tlsHandshakesPerSec = round(median(h), 1);
      results[v.name] = entry;
      say(`${v.name.padEnd(18)} median ${JSON.stringify(entry)}`);
    }
  } finally {
    for (const { peer } of started) await peer.stop().catch(() => undefined);
    await backend.stop();
    await rm(certDir, { recursive: true, force: true });
  }

  const main = hasWrk && clients.some(([c]) => c === 'wrk') ? 'wrk' : 'autocannon';
  const get = (peer: string, field: keyof Sample, client = main) =>
    (results[peer]?.[client] as Record<string, number> | undefined)?.[field] as number | undefined;
  const cpu = (peer: string) => {
    const r = results[peer]?.[main] as Record<string, number> | undefined;
    return r?.cpuUserUsPerReq !== undefined && r.cpuSysUsPerReq !== undefined ? r.cpuUserUsPerReq + r.cpuSysUsPerReq : undefined;
  };
  const tls = (peer: string) => results[peer]?.tlsHandshakesPerSec as number | undefined;
  const rps = (a: string, b: string) => ratio(get(a, 'rps'), get(b, 'rps'));
  const ratios = {
    vsHaproxy: rps('portico', 'haproxy'),
    vsNginx: rps('portico', 'nginx'),
    vsHttpProxy: rps('portico', 'http-proxy'),
    vsDirect: rps('portico', 'direct'),
    p99VsHaproxy: ratio(get('portico', 'p99Ms'), get('haproxy', 'p99Ms')),
    autocannonVsHaproxy: ratio(get('portico', 'rps', 'autocannon'), get('haproxy', 'rps', 'autocannon')),
    tlsHandshakesVsHaproxy: ratio(tls('portico'), tls('haproxy')),
    // Like for like (no access log, as the peers):
    noLogVsHaproxy: rps('portico-nolog', 'haproxy'),
    noLogVsNginx: rps('portico-nolog', 'nginx'),
    noLogVsHttpProxy: rps('portico-nolog', 'http-proxy'),
    noLogP99VsHaproxy: ratio(get('portico-nolog', 'p99Ms'), get('haproxy', 'p99Ms')),
    // CPU per request (user + system), HAProxy's over Portico's: the throughput ratio a CPU-bound run tends to.
    cpuPerReqHaproxyOverPortico: ratio(cpu('haproxy'), cpu('portico')),
    cpuPerReqHaproxyOverPorticoNoLog: ratio(cpu('haproxy'), cpu('portico-nolog')),
    // Scaling across cores: each peer's 2-thread shape over its 1-thread one (capped below 2× on this machine,
    // alike for all: the 2-thread shape gets CPU 1 and what the client side leaves of CPU 0).
    scalingPortico: rps('portico-auto', 'portico'),
    scalingPorticoNoLog: rps('portico-nolog-auto', 'portico-nolog'),
    scalingHaproxy: rps('haproxy-2', 'haproxy'),
    scalingNginx: rps('nginx-2', 'nginx'),
    p99ScalingPorticoNoLog: ratio(get('portico-nolog-auto', 'p99Ms'), get('portico-nolog', 'p99Ms')),
    p99ScalingHaproxy: ratio(get('haproxy-2', 'p99Ms'), get('haproxy', 'p99Ms')),
    p99ScalingNginx: ratio(get('nginx-2', 'p99Ms'), get('nginx', 'p99Ms')),
    tlsScalingPortico: ratio(tls('portico-auto'), tls('portico')),
    tlsScalingHaproxy: ratio(tls('haproxy-2'), tls('haproxy')),
    // Portico against each peer with two threads / workers (the 1-thread ones are above).
    autoVsHaproxy2: rps('portico-auto', 'haproxy-2'),
    noLogAutoVsHaproxy2: rps('portico-nolog-auto', 'haproxy-2'),
    noLogAutoVsNginx2: rps('portico-nolog-auto', 'nginx-2'),
    noLogAutoP99VsHaproxy2: ratio(get('portico-nolog-auto', 'p99Ms'), get('haproxy-2', 'p99Ms')),
    tlsHandshakesAutoVsHaproxy2: ratio(tls('portico-auto'), tls('haproxy-2')),
    cpuPerReqHaproxy2OverPorticoNoLogAuto: ratio(cpu('haproxy-2'), cpu('portico-nolog-auto')),
  };
  // A scaling figure means something only when the 1-thread run was bounded by the server's own core.
  const caveat = (one: string) => {
    const limit = (results[one]?.[main] as Record<string, unknown> | undefined)?.limit;
    return limit && limit !== 'server'
      ? ` [its 1-thread run was ${limit}-bound (CPU ${serverCpus(1)} under ${SATURATED * 100}% busy): not a measure of its scaling]`
      : '';
  };
  const scaled = (two: string, one: string, r: number | null) =>
    r !== null
      ? `${one} ${r}×${caveat(one)}`
      : `${one} –${skipped[two] ? ` (${two}: ${String(skipped[two].skipped)})` : skipped[one] ? ` (${one}: ${String(skipped[one].skipped)})` : ''}`;
  say(
    `scaling, 2-thread ÷ 1-thread req/s (${main}): ${[
      scaled('portico-auto', 'portico', ratios.scalingPortico),
      scaled('portico-nolog-auto', 'portico-nolog', ratios.scalingPorticoNoLog),
      scaled('haproxy-2', 'haproxy', ratios.scalingHaproxy),
      scaled('nginx-2', 'nginx', ratios.scalingNginx),
    ].join(', ')}; http-proxy: one Node process, no 2-thread shape`,
  );
  const noise = noiseWarning(
    Object.values(results).map((r) => ((r[main] as Record<string, number> | undefined)?.otherCores ?? 0) as number),
  );
  if (noise) say(noise);
  say(`ratios (${main}): ${JSON.stringify(ratios)}`);
  const met = (r: number | null, ok: (r: number) => boolean) => (r === null ? null : ok(r));
  report({
    bench: 'l7',
    runs: RUNS,
    setup: { pinning: describePinning(), workersKey: workersKey.supported, client: main },
    results: { ...results, ...skipped },
    ratios,
    // Judged like for like: the peers log nothing, so neither does the Portico they are judged against
    // (portico-nolog). How Portico does with its access log on is judged too (withAccessLog), and both
    // are reported; the ratios above keep their names (vsHaproxy … are Portico with its log on).
    goals: {
      rpsVsHaproxy: {
        goal: '≥0.5 (aim 0.7)',
        on: 'portico-nolog',
        met: met(ratios.noLogVsHaproxy, (r) => r >= 0.5),
        withAccessLog: met(ratios.vsHaproxy, (r) => r >= 0.5),
      },
      rpsVsHttpProxy: {
        goal: '≥4',
        on: 'portico-nolog',
        met: met(ratios.noLogVsHttpProxy, (r) => r >= 4),
        withAccessLog: met(ratios.vsHttpProxy, (r) => r >= 4),
      },
      p99VsHaproxy: {
        goal: '≤1.5',
        on: 'portico-nolog',
        met: met(ratios.noLogP99VsHaproxy, (r) => r <= 1.5),
        withAccessLog: met(ratios.p99VsHaproxy, (r) => r <= 1.5),
      },
    },
  });
}
