/**
 * `npm run bench -- churn`: a running appliance at cluster size (10,000 services, 100,000 endpoints, 10,000
 * routes, 100 VIPs) under change, with `wrk -c20` on one L7 route.
 *
 *  1. Quiet: wrk alone (no change) — the reference.
 *  2. Endpoint churn: one endpoint changes every 10 ms for 10 s (a task moving), sent by a feed as a delta,
 *     while wrk runs: req/s and p99 against the quiet run (goal ≥0.9×, ≤1.2×); change → served on every
 *     plane (the pipeline's subscribers run after the planes applied), median and p99 (goal p99 ≤10 ms);
 *     the planes' CPU per change (goal ≤2 ms); RSS after the 1,000 changes and after shrinking back to three
 *     services.
 *  3. Config reload: the same services as a ~4 MB YAML config file, rewritten with one line changed while wrk
 *     runs: req/s and p99 against quiet, and how long the file took to be served.
 *
 * Portico runs in this process (`up()` with the default parts plus a feed the bench drives); wrk runs as
 * a child pinned to the second core with taskset when there is one, this process to the first, so the load
 * generator does not steal the proxy's core. RUNS rounds, medians.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { up, type Appliance } from '../src/main.js';
import type { DataPlane } from '../src/model/plane.js';
import type { RoutingTable, Snapshot, SnapshotDelta, TableChange } from '../src/model/types.js';
import { PLANES } from '../src/planes.js';
import { PROVIDERS } from '../src/providers/index.js';
import type { Provider, SnapshotSink } from '../src/providers/types.js';
import { silentLogger } from '../src/telemetry/log.js';
import { median, percentile, ratio, report, round, say, which } from './lib.js';
import { freePort, startNginx, type Peer } from './peers.js';

const run = promisify(execFile);
const SERVICES = 10_000;
const ENDPOINTS_PER_SERVICE = 10;
const VIPS = 100;
const CHANGE_EVERY_MS = 10;
const DURATION_S = 10;
const CONNECTIONS = 20;
const RUNS = Number(process.env.BENCH_CHURN_RUNS ?? 3);

interface WrkSample {
  rps: number;
  p99Ms: number;
  errors: number;
}

function parseLatency(text: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

const pinned = os.cpus().length >= 2 && !!which('taskset');

async function wrk(port: number): Promise<WrkSample> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${DURATION_S}s`, '--latency', `http://127.0.0.1:${port}/`];
  const { stdout } = pinned
    ? await run('taskset', ['-c', '1', 'wrk', ...args], { timeout: (DURATION_S + 30) * 1000 })
    : await run('wrk', args, { timeout: (DURATION_S + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = non2xx + (errs ? Number(errs[1]) + Number(errs[2]) + Number(errs[3]) + Number(errs[4]) : 0);
  return { rps, p99Ms: parseLatency(stdout, '99'), errors };
}

type LocalService = Snapshot['services'][string];

function appService(i: number, shift = 0): LocalService {
  const endpoints = [];
  for (let e = 0; e < ENDPOINTS_PER_SERVICE; e++) {
    const n = i * ENDPOINTS_PER_SERVICE + e;
    endpoints.push({
      address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
      port: 8000 + ((e + shift) % 1000),
      weight: 1,
      health: 'healthy' as const,
      task: `app${i}`,
      labels: {},
    });
  }
  return {
    name: `app${i}`,
    framework: 'marathon',
    endpoints,
    balance: { algorithm: 'roundrobin' },
    vips: i < VIPS ? [{ name: `app${i}`, port: 80, protocol: 'tcp' }] : [],
    labels: {},
  };
}

function bigSnapshot(): Snapshot {
  const snap: Snapshot = { provider: 'cluster', services: {}, routes: [], entrypoints: {} };
  for (let i = 0; i < SERVICES; i++) {
    snap.services[`app${i}`] = appService(i);
    snap.routes.push({
      id: `cluster/app${i}`,
      entrypoint: 'web',
      host: `app${i}.example.test`,
      path: '/',
      pathMatch: 'prefix',
      service: `app${i}`,
    });
  }
  return snap;
}

/** The feed the bench drives: what a cluster's scheduler would send (a snapshot, then task changes). */
class ClusterFeed implements Provider {
  readonly name = 'cluster';
  readonly priority = 50;
  sink: SnapshotSink | undefined;
  async start(sink: SnapshotSink): Promise<void> {
    this.sink = sink;
    sink(bigSnapshot());
  }
  change(delta: SnapshotDelta): void {
    if (this.sink?.change) this.sink.change(delta);
    else throw new Error('the appliance took no deltas');
  }
  replace(snapshot: Snapshot): void {
    this.sink?.(snapshot);
  }
  async stop(): Promise<void> {}
  status() {
    return { name: this.name, priority: this.priority, state: 'ok' as const };
  }
}

/** Planes wrapped to count the CPU each apply() takes (apply is synchronous: the delta is its own). */
const applyCpuMs: number[] = [];
function timedPlanes() {
  return PLANES.map((reg) => ({
    ...reg,
    create: (ctx: Parameters<(typeof reg)['create']>[0]) => {
      const plane = reg.create(ctx);
      if (!plane) return plane;
      const apply = plane.apply.bind(plane);
      const timed: DataPlane = Object.assign(Object.create(plane) as DataPlane, {
        apply: (t: RoutingTable, c?: TableChange) => {
          const before = process.cpuUsage();
          apply(t, c);
          const d = process.cpuUsage(before);
          applyCpuMs.push((d.user + d.system) / 1000);
        },
      });
      return timed;
    },
  }));
}

function gc(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

function configText(apiPort: number, web: number, backend: number, services = 0, marker = 0): string {
  const lines = [
    `# churn bench ${marker}`,
    'data: ./data',
    'api: { listen: 127.0.0.1:0 }',
    'dns: { listen: 127.0.0.1:0 }',
    'entrypoints:',
    `  web: { listen: 127.0.0.1:${web} }`,
    'services:',
    '  front:',
    '    endpoints:',
    `      - { address: 127.0.0.1, port: ${backend} }`,
  ];
  for (let i = 0; i < services; i++) {
    lines.push(`  file${i}:`, '    endpoints:');
    const s = appService(i, marker);
    for (const e of s.endpoints) lines.push(`      - { address: ${e.address}, port: ${e.port} }`);
  }
  lines.push('routes:', '  - { entrypoint: web, host: "*", path: /, service: front }');
  for (let i = 0; i < services; i++) lines.push(`  - { entrypoint: web, host: file${i}.example.test, path: /, service: file${i} }`);
  void apiPort;
  return `${lines.join('\n')}\n`;
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

/** Resolves when a served table satisfies `pred`; returns the time it was served. */
function servedWhen(app: Appliance, pred: (t: RoutingTable) => boolean): Promise<number> {
  return new Promise((resolve) => {
    if (pred(app.pipeline.current())) return resolve(performance.now());
    const off = app.pipeline.subscribe((t) => {
      if (!pred(t)) return;
      off();
      resolve(performance.now());
    });
  });
}

export async function main(): Promise<void> {
  if (!which('wrk')) throw new Error('churn bench needs wrk (apt-get install wrk)');
  const nginx = which('nginx') ?? (which('/usr/sbin/nginx') ? '/usr/sbin/nginx' : undefined);
  if (!nginx) throw new Error('churn bench needs nginx (apt-get install nginx-light)');
  if (pinned) await run('taskset', ['-p', '-c', '0', String(process.pid)]);
  say(
    `churn: ${SERVICES} services, ${SERVICES * ENDPOINTS_PER_SERVICE} endpoints; wrk -c${CONNECTIONS} ${DURATION_S} s; ${pinned ? 'portico on cpu 0, wrk on cpu 1' : 'not pinned'}`,
  );
  const backend: Peer = await startNginx('churn-backend', nginx, `server { listen 127.0.0.1:PORT; location / { return 200 "ok\\n"; } }`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'portico-churn-'));
  const web = await freePort();
  const configPath = path.join(dir, 'portico.yaml');
  await writeFile(configPath, configText(0, web, backend.port));
  const feed = new ClusterFeed();
  const t0 = performance.now();
  const app = await up({
    configPath,
    logger: silentLogger,
    drainMs: 100,
    providers: [...PROVIDERS, { name: 'cluster', create: () => feed }],
    planes: timedPlanes(),
  });
  const startMs = performance.now() - t0;
  say(`up with the cluster feed: ${Math.round(startMs)} ms`);
  const results: Record<string, Record<string, unknown>> = { start: { ms: Math.round(startMs) } };
  try {
    const quiet: WrkSample[] = [];
    const churn: WrkSample[] = [];
    const latencies: number[] = [];
    let changes = 0;
    for (let r = 0; r < RUNS; r++) {
      quiet.push(await wrk(web));
      // Endpoint churn: service k's endpoints move one port; served when the planes have the version.
      const sent = new Map<number, number>();
      const off = app.pipeline.subscribe((t) => {
        const now = performance.now();
        for (const [v, at] of sent) {
          if (v > t.version) continue;
          latencies.push(now - at);
          sent.delete(v);
        }
      });
      applyCpuMs.length = 0;
      const timer = setInterval(() => {
        const k = changes++ % SERVICES;
        feed.change({ upsert: { [`app${k}`]: appService(k, changes) } });
        // The version this change will be served as: the next one after the aggregator's current.
        sent.set(app.aggregator.current().version + 1, performance.now());
      }, CHANGE_EVERY_MS);
      churn.push(await wrk(web));
      clearInterval(timer);
      await app.pipeline.flush();
      off();
      say(
        `round ${r + 1}: quiet ${Math.round(quiet[r]!.rps)} req/s p99 ${quiet[r]!.p99Ms} ms; churn ${Math.round(churn[r]!.rps)} req/s p99 ${churn[r]!.p99Ms} ms; planes' CPU per change median ${round(median(applyCpuMs), 3)} ms p99 ${round(percentile(applyCpuMs, 99), 3)} ms`,
      );
    }
    const rss = Math.round(process.memoryUsage().rss / 2 ** 20);
    gc();
    const heapAfterChanges = Math.round(process.memoryUsage().heapUsed / 2 ** 20);
    feed.replace({
      provider: 'cluster',
      services: { app0: appService(0), app1: appService(1), app2: appService(2) },
      routes: [],
      entrypoints: {},
    });
    await servedWhen(app, (t) => t.services.size <= 4);
    await app.pipeline.flush();
    gc();
    const shrunk = { rssMB: Math.round(process.memoryUsage().rss / 2 ** 20), heapMB: Math.round(process.memoryUsage().heapUsed / 2 ** 20) };
    const q = { rps: median(quiet.map((s) => s.rps)), p99Ms: median(quiet.map((s) => s.p99Ms)) };
    const c = { rps: median(churn.map((s) => s.rps)), p99Ms: median(churn.map((s) => s.p99Ms)) };
    results.endpointChurn = {
      changes,
      quiet: { rps: Math.round(q.rps), p99Ms: q.p99Ms },
      churn: { rps: Math.round(c.rps), p99Ms: c.p99Ms, errors: churn.reduce((a, s) => a + s.errors, 0) },
      rpsRatio: ratio(c.rps, q.rps),
      p99Ratio: ratio(c.p99Ms, q.p99Ms),
      servedMs: { median: round(median(latencies)), p99: round(percentile(latencies, 99)) },
      planesCpuMsPerChange: { median: round(median(applyCpuMs), 3), p99: round(percentile(applyCpuMs, 99), 3) },
      afterChanges: { rssMB: rss, heapMB: heapAfterChanges },
      afterShrink: shrunk,
    };
    say(
      `endpoint churn: ${changes} changes; req/s ${ratio(c.rps, q.rps)}× quiet, p99 ${ratio(c.p99Ms, q.p99Ms)}×; change → served on every plane median ${round(median(latencies))} ms, p99 ${round(percentile(latencies, 99))} ms; RSS ${rss} MB after the changes, ${shrunk.rssMB} MB (heap ${shrunk.heapMB} MB) after shrinking to 3 services`,
    );

    // Config reload: the same size as a YAML file, one line changed per save, under load.
    feed.replace({ provider: 'cluster', services: {}, routes: [], entrypoints: {} });
    let marker = 1;
    await writeAtomic(configPath, configText(0, web, backend.port, SERVICES, marker));
    const big = await servedWhen(app, (t) => t.services.has(`file${SERVICES - 1}@file`));
    void big;
    const reloadQuiet: WrkSample[] = [];
    const reloadLoad: WrkSample[] = [];
    const reloadMs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      reloadQuiet.push(await wrk(web));
      const load = wrk(web);
      // Saves spread over the run: each waits until the previous one is served.
      const until = performance.now() + DURATION_S * 1000 - 1500;
      while (performance.now() < until) {
        marker++;
        const port = 8000 + (marker % 1000);
        const at = performance.now();
        await writeAtomic(configPath, configText(0, web, backend.port, SERVICES, marker));
        await servedWhen(app, (t) => t.services.get('file0@file')?.endpoints.some((e) => e.port === port) ?? false);
        reloadMs.push(performance.now() - at);
      }
      reloadLoad.push(await load);
    }
    const rq = { rps: median(reloadQuiet.map((s) => s.rps)), p99Ms: median(reloadQuiet.map((s) => s.p99Ms)) };
    const rl = { rps: median(reloadLoad.map((s) => s.rps)), p99Ms: median(reloadLoad.map((s) => s.p99Ms)) };
    results.configReload = {
      saves: reloadMs.length,
      quiet: { rps: Math.round(rq.rps), p99Ms: rq.p99Ms },
      reloading: { rps: Math.round(rl.rps), p99Ms: rl.p99Ms, errors: reloadLoad.reduce((a, s) => a + s.errors, 0) },
      rpsRatio: ratio(rl.rps, rq.rps),
      p99Ratio: ratio(rl.p99Ms, rq.p99Ms),
      savedToServedMs: { median: Math.round(median(reloadMs)), max: Math.round(Math.max(...reloadMs)) },
    };
    say(
      `config reload (${SERVICES} services in YAML): ${reloadMs.length} saves; req/s ${ratio(rl.rps, rq.rps)}× quiet, p99 ${ratio(rl.p99Ms, rq.p99Ms)}×; save → served median ${Math.round(median(reloadMs))} ms`,
    );
  } finally {
    await app.stop();
    await backend.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const churn = results.endpointChurn as unknown as {
    rpsRatio: number;
    p99Ratio: number;
    servedMs: { p99: number };
    planesCpuMsPerChange: { p99: number };
  };
  const reload = results.configReload as unknown as { rpsRatio: number; p99Ratio: number };
  report({
    bench: 'churn',
    runs: RUNS,
    results,
    ratios: { churnRps: churn.rpsRatio, churnP99: churn.p99Ratio, reloadRps: reload.rpsRatio, reloadP99: reload.p99Ratio },
    goals: {
      churnRps: { goal: '≥0.9× quiet', met: churn.rpsRatio >= 0.9 },
      churnP99: { goal: '≤1.2× quiet', met: churn.p99Ratio <= 1.2 },
      servedP99: { goal: '≤10 ms', met: churn.servedMs.p99 <= 10 },
      planesCpu: { goal: '≤2 ms per change (p99)', met: churn.planesCpuMsPerChange.p99 <= 2 },
      reloadRps: { goal: '≥0.9× quiet', met: reload.rpsRatio >= 0.9 },
      reloadP99: { goal: '≤1.2× quiet', met: reload.p99Ratio <= 1.2 },
    },
  });
}
