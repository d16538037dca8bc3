/**
 * `npm run bench -- l7`: the L7 ingress beside HAProxy, nginx and http-proxy, in one run on this machine.
 *
 * The same backend for all (nginx `return 200`, one worker; a Node raw-socket backend if nginx is
 * absent), the same clients (wrk when installed, and autocannon), keep-alive, 50 connections, RUNS runs of
 * DURATION seconds each, medians. Peers: Portico (one process), HAProxy (`nbthread 1`), nginx
 * (`worker_processes 1`, upstream keepalive), http-proxy (keep-alive agent, maxSockets 256), and direct
 * to the backend. Then new-connection TLS handshakes per second through Portico and HAProxy
 * (`openssl s_time -new`).
 *
 * Portico runs as an operator runs it (`portico up` from dist/, log level info, the access log on, stdout
 * to a file); `portico-nolog` is the same with the access log off, like the peers, which log nothing.
 * The goals are judged like for like, on `portico-nolog`, and also reported for `portico` (withAccessLog).
 * Every peer's CPU time per request (user and system, from /proc,
 * the process and its children) is reported beside its throughput: on a shared 2-core machine it is
 * steadier than req/s, and it says where the time goes.
 *
 * For quick experiments: BENCH_L7_PEERS=portico,haproxy and BENCH_L7_CLIENTS=wrk run a subset (the
 * ratios that need a missing peer are null); BENCH_PORTICO_NODE_ARGS passes node flags to Portico.
 */
import { execFile, spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { median, ratio, report, round, say, which } from './lib.js';
import { cpuSeconds, freePort, startHaproxy, startNginx, startNodeScript, stopProcess, tmpdir, waitForPort, type Peer } from './peers.js';

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = 50;

interface Sample {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  cpuUserUs?: number;
  cpuSysUs?: number;
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

async function wrk(port: number): Promise<Sample> {
  const { stdout } = await run('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, '--latency', `http://127.0.0.1:${port}/`], {
    timeout: (DURATION_S + 30) * 1000,
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? NaN);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} non-2xx responses on port ${port}`);
  return { rps, p50Ms: parseWrkLatency(stdout, '50'), p99Ms: parseWrkLatency(stdout, '99'), requests };
}

async function autocannon(port: number): Promise<Sample> {
  const bin = path.join(__dirname, '..', 'node_modules', 'autocannon', 'autocannon.js');
  const { stdout } = await run(
    process.execPath,
    [bin, '-c', String(CONNECTIONS), '-d', String(DURATION_S), '-j', `http://127.0.0.1:${port}/`],
    { timeout: (DURATION_S + 30) * 1000, maxBuffer: 64 << 20 },
  );
  const j = JSON.parse(stdout) as {
    requests: { average: number; total: number };
    latency: { p50: number; p99: number };
    non2xx: number;
    errors: number;
  };
  if (j.non2xx > 0 || j.errors > 0) throw new Error(`autocannon saw ${j.non2xx} non-2xx and ${j.errors} errors on port ${port}`);
  return { rps: j.requests.average, p50Ms: j.latency.p50, p99Ms: j.latency.p99, requests: j.requests.total };
}

function summarise(samples: Sample[]): Record<string, number> {
  const out: Record<string, number> = {
    rps: Math.round(median(samples.map((s) => s.rps))),
    p50Ms: round(median(samples.map((s) => s.p50Ms))),
    p99Ms: round(median(samples.map((s) => s.p99Ms))),
  };
  const user = samples.map((s) => s.cpuUserUs).filter((x): x is number => x !== undefined);
  const sys = samples.map((s) => s.cpuSysUs).filter((x): x is number => x !== undefined);
  if (user.length) out.cpuUserUsPerReq = round(median(user), 1);
  if (sys.length) out.cpuSysUsPerReq = round(median(sys), 1);
  return out;
}

async function startPortico(
  name: string,
  backendPort: number,
  accessLog: boolean,
  tls?: { certFile: string; keyFile: string },
): Promise<Peer & { tlsPort?: number }> {
  const dir = await tmpdir(name);
  const port = await freePort();
  const tlsPort = tls ? await freePort() : undefined;
  const cfg = `
data: ./data
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
  await writeFile(path.join(dir, 'portico.yaml'), cfg);
  // The compiled build, as `npm start` runs it (tsx's module getters would tax the hot path). Its log goes
  // to a file, as an operator's would (not to a pipe this process would have to read).
  const log = openSync(path.join(dir, 'portico.log'), 'w');
  const env: Record<string, string> = { ...(process.env as Record<string, string>), PORTICO_FROM_SOURCE: '0' };
  if (accessLog) {
    env.PORTICO_LOG_LEVEL = process.env.PORTICO_LOG_LEVEL ?? 'info';
    delete env.PORTICO_ACCESS_LOG;
  } else {
    env.PORTICO_LOG_LEVEL = 'warn';
    env.PORTICO_ACCESS_LOG = 'off';
  }
  // BENCH_PORTICO_NODE_ARGS: node flags for the Portico process only (e.g. GC sizing experiments).
  const nodeArgs = (process.env.BENCH_PORTICO_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(
    process.execPath,
    [...nodeArgs, path.join(__dirname, '..', 'bin', 'portico'), 'up', '--config', path.join(dir, 'portico.yaml')],
    { cwd: dir, env, stdio: ['ignore', log, 'inherit'] },
  );
  closeSync(log);
  await waitForPort(port, '127.0.0.1', 30_000);
  const peer: Peer & { tlsPort?: number } = {
    name,
    port,
    proc,
    stop: async () => {
      await stopProcess(proc, 15_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (tlsPort !== undefined) peer.tlsPort = tlsPort;
  return peer;
}

async function makeCert(dir: string): Promise<{ certFile: string; keyFile: string; pem: string }> {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=bench.example.test',
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ]);
  const pem = `${await readFile(certFile, 'utf8')}${await readFile(keyFile, 'utf8')}`;
  return { certFile, keyFile, pem };
}

async function handshakes(port: number): Promise<number> {
  const { stdout } = await run('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(DURATION_S)], {
    timeout: (DURATION_S + 30) * 1000,
  });
  const m = /([\d.]+) connections\/user sec/.exec(stdout) ?? /(\d+) connections in [\d.]+ real seconds/.exec(stdout);
  const real = /(\d+) connections in ([\d.]+)s?;? ?.*real/.exec(stdout);
  if (real) return round(Number(real[1]) / Number(real[2]), 1);
  return m ? Number(m[1]) : NaN;
}

export async function main(): Promise<void> {
  say('building dist/ (Portico runs compiled, as npm start runs it)');
  await run(process.execPath, [
    path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    path.join(__dirname, '..', 'tsconfig.build.json'),
  ]);
  const nginxBin = which('nginx');
  const haproxyBin = which('haproxy');
  const hasWrk = !!which('wrk');
  const hasOpenssl = !!which('openssl');
  const clients: Array<[string, (port: number) => Promise<Sample>]> = [];
  if (hasWrk) clients.push(['wrk', wrk]);
  clients.push(['autocannon', autocannon]);
  // BENCH_L7_CLIENTS / BENCH_L7_PEERS (comma-separated names): a subset, for quick experiments.
  const only = (v: string | undefined) => (v ? new Set(v.split(',').map((s) => s.trim())) : undefined);
  const onlyClients = only(process.env.BENCH_L7_CLIENTS);
  if (onlyClients) clients.splice(0, clients.length, ...clients.filter(([n]) => onlyClients.has(n)));
  say(`l7 bench: ${RUNS} runs × ${DURATION_S}s, ${CONNECTIONS} connections, keep-alive; clients: ${clients.map((c) => c[0]).join(', ')}`);

  const backend = nginxBin
    ? await startNginx('backend', nginxBin, `server { listen 127.0.0.1:PORT; location / { return 200 "ok\\n"; } }`)
    : await startNodeScript('backend', NODE_BACKEND, await freePort());
  say(`backend: ${nginxBin ? 'nginx return 200' : 'node raw-socket'} on ${backend.port}`);

  const certDir = await tmpdir('certs');
  const cert = hasOpenssl ? await makeCert(certDir) : undefined;
  if (cert) await writeFile(path.join(certDir, 'haproxy.pem'), cert.pem);

  const peers: Record<string, () => Promise<Peer & { tlsPort?: number }>> = {
    direct: async () => ({ name: 'direct', port: backend.port, stop: async () => {} }),
    portico: () => startPortico('portico', backend.port, true, cert),
    'portico-nolog': () => startPortico('portico-nolog', backend.port, false),
  };
  const skipped: Record<string, string> = {};
  if (haproxyBin) {
    peers.haproxy = async () => {
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
      );
      return tlsPort ? { ...p, tlsPort } : p;
    };
  } else skipped.haproxy = 'haproxy is not installed (apt-get install haproxy)';
  if (nginxBin) {
    peers.nginx = () =>
      startNginx(
        'nginx-proxy',
        nginxBin,
        `
  upstream be { server 127.0.0.1:${backend.port}; keepalive 64; }
  server { listen 127.0.0.1:PORT; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
      );
  } else skipped.nginx = 'nginx is not installed (apt-get install nginx-light)';
  peers['http-proxy'] = async () => startNodeScript('http-proxy', HTTP_PROXY_PEER, await freePort(), [String(backend.port)]);
  const onlyPeers = only(process.env.BENCH_L7_PEERS);
  if (onlyPeers) for (const name of Object.keys(peers)) if (!onlyPeers.has(name)) delete peers[name];

  // All peers run at once (idle while not measured) and the runs are interleaved — run 1 of every peer,
  // then run 2 … — so a noisy spell on this shared machine hits every peer alike, not one of them.
  const results: Record<string, Record<string, unknown>> = {};
  const started: Array<[string, Peer & { tlsPort?: number }]> = [];
  try {
    for (const [name, start] of Object.entries(peers)) started.push([name, await start()]);
    const samples = new Map<string, Sample[]>();
    const hs = new Map<string, number[]>();
    for (const [, peer] of started) for (const [, fn] of clients) await fn(peer.port).catch(() => undefined); // warm-up
    for (let i = 0; i < RUNS; i++) {
      for (const [name, peer] of started) {
        for (const [client, fn] of clients) {
          const key = `${name}\0${client}`;
          const before = cpuSeconds(peer.proc?.pid);
          const sample = await fn(peer.port);
          const after = cpuSeconds(peer.proc?.pid);
          if (before && after && sample.requests > 0) {
            sample.cpuUserUs = round(((after.user - before.user) * 1e6) / sample.requests, 1);
            sample.cpuSysUs = round(((after.sys - before.sys) * 1e6) / sample.requests, 1);
          }
          samples.set(key, [...(samples.get(key) ?? []), sample]);
          say(`run ${i + 1} ${name.padEnd(10)} ${client.padEnd(10)} ${JSON.stringify(sample)}`);
        }
        if (peer.tlsPort !== undefined) hs.set(name, [...(hs.get(name) ?? []), await handshakes(peer.tlsPort)]);
      }
    }
    for (const [name] of started) {
      const entry: Record<string, unknown> = {};
      for (const [client] of clients) entry[client] = summarise(samples.get(`${name}\0${client}`) ?? []);
      const h = hs.get(name);
      if (h) entry.tlsHandshakesPerSec = round(median(h), 1);
      results[name] = entry;
      say(`${name.padEnd(10)} median ${JSON.stringify(entry)}`);
    }
  } finally {
    for (const [, peer] of started) await peer.stop().catch(() => undefined);
    await backend.stop();
    await rm(certDir, { recursive: true, force: true });
  }

  const main = hasWrk ? 'wrk' : 'autocannon';
  const get = (peer: string, field: keyof Sample, client = main) =>
    (results[peer]?.[client] as Record<string, number> | undefined)?.[field];
  const cpu = (peer: string) => {
    const r = results[peer]?.[main] as Record<string, number> | undefined;
    return r?.cpuUserUsPerReq !== undefined && r.cpuSysUsPerReq !== undefined ? r.cpuUserUsPerReq + r.cpuSysUsPerReq : undefined;
  };
  const ratios = {
    vsHaproxy: ratio(get('portico', 'rps'), get('haproxy', 'rps')),
    vsNginx: ratio(get('portico', 'rps'), get('nginx', 'rps')),
    vsHttpProxy: ratio(get('portico', 'rps'), get('http-proxy', 'rps')),
    vsDirect: ratio(get('portico', 'rps'), get('direct', 'rps')),
    p99VsHaproxy: ratio(get('portico', 'p99Ms'), get('haproxy', 'p99Ms')),
    autocannonVsHaproxy: ratio(get('portico', 'rps', 'autocannon'), get('haproxy', 'rps', 'autocannon')),
    tlsHandshakesVsHaproxy: ratio(
      results.portico?.tlsHandshakesPerSec as number | undefined,
      results.haproxy?.tlsHandshakesPerSec as number | undefined,
    ),
    // Like for like (no access log, as the peers):
    noLogVsHaproxy: ratio(get('portico-nolog', 'rps'), get('haproxy', 'rps')),
    noLogVsHttpProxy: ratio(get('portico-nolog', 'rps'), get('http-proxy', 'rps')),
    noLogP99VsHaproxy: ratio(get('portico-nolog', 'p99Ms'), get('haproxy', 'p99Ms')),
    // CPU per request (user + system), HAProxy's over Portico's: the throughput ratio a CPU-bound run tends to.
    cpuPerReqHaproxyOverPortico: ratio(cpu('haproxy'), cpu('portico')),
    cpuPerReqHaproxyOverPorticoNoLog: ratio(cpu('haproxy'), cpu('portico-nolog')),
  };
  say(`ratios (${main}): ${JSON.stringify(ratios)}`);
  const met = (r: number | null, ok: (r: number) => boolean) => (r === null ? null : ok(r));
  report({
    bench: 'l7',
    runs: RUNS,
    results: { ...results, ...Object.fromEntries(Object.entries(skipped).map(([k, v]) => [k, { skipped: v }])) },
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
