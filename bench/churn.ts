/**
 * `npm run bench -- churn`: Portico as it runs (`portico up` from the compiled build: a supervisor, a control
 * process and `workers: auto` data-plane workers) at cluster size — 10,000 services, 100,000 endpoints —
 * under change, with `wrk -t1 -c20` on one L7 route (a config entrypoint and route to an nginx backend).
 * The same runs with `workers: 0` (the planes inside the control process: the old one-process shape) for
 * comparison.
 *
 * The feed is a fake Marathon served by this process on 127.0.0.1 (test/providers/marathon/api-double.ts):
 * 10,000 apps of bench/marathon.ts's Marathon 1.5 shape with 10 tasks each, `/v2/apps?embed=apps.tasks`
 * (~69 MB) and the `/v2/events` SSE stream. VIP labels stay on 100 apps (the other apps' are dropped; see
 * VIPS). Scenarios, each round against a quiet wrk run of the same process:
 *
 *  1. Endpoint churn: one task moves every 10 ms for 10 s (a `status_update_event` with a new port or
 *     container address, each for another app): req/s and p99 against quiet; change → served by every
 *     plane (median, p99); the workers' decode + apply time per change (portico_worker_table_apply_seconds);
 *     CPU of the control and of the workers; RSS of every process after the changes.
 *  2. Marathon resync: the fake Marathon cuts the event stream 0.5 s into a wrk run; the provider reconnects
 *     and reads the whole /v2/apps again (one app differs in it, so the resync serves a version); cut again
 *     once that is served, until the run's last 1.5 s (about three resyncs per run): req/s and p99 against
 *     quiet; cut → read (`marathon state resynced`) and cut → served.
 *  3. Config reload (another Portico, the 10k services and their routes in a 5.3 MB YAML file instead of
 *     Marathon): the file saved with one line changed (an endpoint's port), again as soon as the last save
 *     is served, under wrk: req/s, p99, save → served.
 *  Start-up: spawn → `portico is up` and → the first 200 through the L7 route, for both feeds.
 *
 * Matching a change with the version that serves it. Each event moves one task of an app no other event of
 * the round touches, so it changes exactly one service; events are applied in order. The control logs every
 * aggregator version with how many services it changed (`routing table published`, info), the pipeline's
 * served version and the aggregator version it was built from (`table published`, debug), and `table
 * served` (debug) once every live worker applied a version. Event i is in the first aggregator version at
 * which the running sum of `changed` reaches i (the Marathon provider batches events for 20 ms, so one
 * version often holds two changes); it is served at the first `table served` of a version built from that
 * one or a later one. The bench checks that the sum equals the number of events (nothing else published);
 * when it does not, the latencies are left out. Times are the log's (pino `time`, wall clock, 1 ms) against
 * this process's wall clock at the send, so they are ±1 ms.
 *
 * Pinning (2 cores): wrk on CPU 0 (taskset); Portico's processes, nginx and this process unpinned, at the
 * nice value they start with (reported per process). The log level is debug (for the two table lines); the
 * workers log nothing more at debug in these runs (counted per process and reported).
 *
 * BENCH_CHURN_RUNS rounds (default 3) for workers: auto, BENCH_CHURN_COMPARE_RUNS (default: the same) for the
 * workers: 0 comparison; medians; about 6 minutes here. BENCH_CHURN_SHAPES=auto,0 and BENCH_CHURN_FEEDS=
 * marathon,file (the defaults) pick what runs; BENCH_CHURN_CONTROL_NICE=n renices the control process once
 * it is up; BENCH_CHURN_NO_WEBSECURE=1 leaves the https entrypoint out; BENCH_PORTICO_NODE_ARGS and
 * BENCH_KEEP=1 (bench/portico-proc.ts) profile Portico and keep its log.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MarathonDouble } from '../test/providers/marathon/api-double.js';
import { clusterApps, fileConfig, marathonConfig, SERVICES, started, TASKS_PER_APP, VIPS, type App, type Start } from './cluster.js';
import { makeCert, median, percentile, ratio, report, round, say, which } from './lib.js';
import { cpuSeconds, freePort, startNginx, type Peer } from './peers.js';
import { buildDist, histogram, machineBusyS, selfCpuS, startPortico, wallMs, type Portico, type ProcInfo } from './portico-proc.js';

const run = promisify(execFile);
const CHANGE_EVERY_MS = 10;
const CHANGES = 1_000;
const DURATION_S = 10;
const CONNECTIONS = 20;
/** Resyncs prepared per wrk run (each takes ~3 s here; the unused ones are dropped). */
const RESYNC_BODIES = 4;
const RUNS = Number(process.env.BENCH_CHURN_RUNS ?? 3);
const COMPARE_RUNS = Number(process.env.BENCH_CHURN_COMPARE_RUNS ?? RUNS);
const SHAPES = (process.env.BENCH_CHURN_SHAPES ?? 'auto,0').split(',').map((s) => s.trim());
const FEEDS = new Set((process.env.BENCH_CHURN_FEEDS ?? 'marathon,file').split(',').map((s) => s.trim()));
const START_TIMEOUT_MS = 180_000;

interface WrkSample {
  rps: number;
  p99Ms: number;
  errors: number;
  /** CPU seconds the machine spent on anything but this bench, Portico, nginx and wrk during the run (of 2 × DURATION_S). */
  otherCpuS?: number;
}

function parseLatency(text: string, pct: string): number {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

const pinned = os.cpus().length >= 2 && !!which('taskset');

async function wrk(port: number, seconds = DURATION_S): Promise<WrkSample> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`];
  const { stdout } = pinned
    ? await run('taskset', ['-c', '0', 'wrk', ...args], { timeout: (seconds + 30) * 1000 })
    : await run('wrk', args, { timeout: (seconds + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = non2xx + (errs ? Number(errs[1]) + Number(errs[2]) + Number(errs[3]) + Number(errs[4]) : 0);
  return { rps, p99Ms: parseLatency(stdout, '99'), errors };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let backend: Peer | undefined;
const began = Date.now();
const elapsed = () => `[${Math.round((Date.now() - began) / 1000)} s]`;

/** CPU seconds so far of the machine, and of what this bench runs (itself and wrk, Portico, nginx). */
function cpuNow(p: Portico): { busy: number; ours: number } {
  const nginx = cpuSeconds(backend?.proc?.pid);
  const portico = p.processes().reduce((a, x) => a + x.cpuS, 0);
  return { busy: machineBusyS(), ours: selfCpuS() + portico + (nginx ? nginx.user + nginx.sys : 0) };
}

/** wrk on `web`, with what else the machine was busy with meanwhile (other sessions share these cores). */
async function measure(p: Portico, web: number): Promise<WrkSample> {
  const a = cpuNow(p);
  const s = await wrk(web);
  const b = cpuNow(p);
  s.otherCpuS = round(b.busy - a.busy - (b.ours - a.ours), 1);
  return s;
}

// ─── The fake Marathon ─────────────────────────────────────────────────────────────────────────────

/** Moves so far (in every shape: a container address is never given twice, so every move changes a service). */
let moves = 0;

/** Moves one task of `app` (a new host port, or a new container address); the event Marathon would send. */
function moveTask(app: App): Record<string, unknown> {
  const seq = ++moves;
  // A task whose health check passes (benchApp fails one task in 97): a failing one is not served anyway.
  const task =
    app.tasks.find((t) => !Array.isArray(t.healthCheckResults) || (t.healthCheckResults as Array<{ alive: boolean }>)[0]?.alive) ??
    app.tasks[0]!;
  if (task.ports.length > 0) task.ports = [31000 + ((task.ports[0]! - 31000 + 1) % 1000)];
  else task.ipAddresses = [{ ipAddress: `9.${128 + ((seq >> 16) & 127)}.${(seq >> 8) & 255}.${seq & 255}`, protocol: 'IPv4' }];
  return {
    appId: app.id,
    taskId: task.id,
    taskStatus: 'TASK_RUNNING',
    message: '',
    host: task.host,
    ports: task.ports,
    ipAddresses: task.ipAddresses,
    slaveId: task.slaveId,
    version: task.version,
  };
}

/**
 * RESYNC_BODIES answers of `/v2/apps`, each with one more app moved than the one before: the first is
 * serialised from `apps` (every move so far, one more among them), the next ones are copies with one more
 * task's host port rewritten in place (same length: 31000–31999), not 69 MB of JSON.stringify each.
 */
function resyncBodies(apps: App[], from: number): Buffer[] {
  const hostPorts = (i: number) => apps[i % SERVICES]!.tasks.some((t) => t.ports.length > 0);
  let i = from;
  const next = (): App => {
    while (!hostPorts(i)) i++;
    return apps[i++ % SERVICES]!;
  };
  moveTask(next());
  const bodies = [Buffer.from(JSON.stringify({ apps }))];
  while (bodies.length < RESYNC_BODIES) {
    const app = next();
    const moved = moveTask(app) as { taskId: string; ports: number[] };
    const body = Buffer.from(bodies.at(-1)!);
    const at = body.indexOf(`"id":${JSON.stringify(moved.taskId)}`);
    const ports = body.indexOf('"ports":[', at) + '"ports":['.length;
    if (at < 0 || body.toString('latin1', ports, ports + 5) !== String(moved.ports[0] === 31000 ? 31999 : moved.ports[0]! - 1))
      throw new Error(`resync body: task ${moved.taskId} not found where expected`);
    body.write(String(moved.ports[0]), ports, 'latin1');
    bodies.push(body);
  }
  return bodies;
}

/**
 * The https entrypoint: benchApp gives a third of the apps HAPROXY_0_VHOST and a redirect to https, so each
 * has a route on `web` and one on `websecure`. An operator serving them defines websecure; without it every
 * such route is a table warning (3,334 of them), which costs every change dearly in the control (see the
 * report). BENCH_CHURN_NO_WEBSECURE=1 leaves it out, to measure that.
 */
let websecure: { certFile: string; keyFile: string } | undefined;

async function writeAtomic(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

// ─── Measuring one Portico ─────────────────────────────────────────────────────────────────────────

/**
 * BENCH_CHURN_CONTROL_NICE=n: renice the control process (workers shapes only) once it is up — what the
 * supervisor could do itself; by default the bench leaves every process at the nice value it starts with.
 */
function reniceControl(p: Portico, inWorkers: boolean): void {
  const n = process.env.BENCH_CHURN_CONTROL_NICE;
  if (n === undefined || !inWorkers) return;
  for (const x of p.processes()) if (x.role === 'control') os.setPriority(x.pid, Number(n));
}

/** CPU each role used while nothing happens (no requests, no changes) for `ms`: % of one core. */
async function idleCpu(p: Portico, ms = 5_000): Promise<Record<string, number>> {
  const a = p.processes();
  await sleep(ms);
  const b = p.processes();
  const out = cpuByRole(a, b);
  for (const k of Object.keys(out)) out[k] = round((out[k]! / (ms / 1000)) * 100, 1);
  return out;
}

function byRole(ps: ProcInfo[]): Record<string, { rssMB: number[]; nice: number[] }> {
  const out: Record<string, { rssMB: number[]; nice: number[] }> = {};
  for (const p of ps) {
    const r = (out[p.role] ??= { rssMB: [], nice: [] });
    r.rssMB.push(p.rssMB);
    r.nice.push(p.nice);
  }
  return out;
}

function cpuByRole(before: ProcInfo[], after: ProcInfo[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of after) {
    const b = before.find((x) => x.pid === a.pid);
    if (b) out[a.role] = round((out[a.role] ?? 0) + a.cpuS - b.cpuS, 2);
  }
  return out;
}

/**
 * Served times of `sentAt.length` single-service changes published after aggregator version `a0`, in order
 * (see the header); undefined where the sum of `changed` does not add up.
 */
function matchChanges(
  p: Portico,
  a0: number,
  sentAt: number[],
  inWorkers: boolean,
): { served: number[]; published: number[]; applied: number[]; versions: number; sound: boolean; changed: number } {
  const lines = p.log.aggregator.filter((l) => l.version > a0);
  const served: number[] = [];
  const published: number[] = [];
  const applied: number[] = [];
  let sum = 0;
  let i = 0;
  for (const l of lines) {
    sum += Number.isFinite(l.changed) ? l.changed : Infinity;
    const at = p.log.servedAt(l.version, inWorkers);
    for (; i < Math.min(sum, sentAt.length); i++) {
      if (!at) continue;
      served.push(at.servedAt - sentAt[i]!);
      published.push(at.publishedAt - sentAt[i]!);
    }
    if (at) applied.push(at.servedAt - at.publishedAt);
  }
  return { served, published, applied, versions: lines.length, sound: sum === sentAt.length, changed: sum };
}

/** Waits until `n` single-service changes after `a0` are served (or timeout). */
async function allServed(p: Portico, a0: number, n: number, inWorkers: boolean, timeoutMs: number): Promise<boolean> {
  const ok = await p.log.until(() => {
    let sum = 0;
    for (const l of p.log.aggregator) {
      if (l.version <= a0) continue;
      sum += Number.isFinite(l.changed) ? l.changed : Infinity;
      if (sum >= n) return p.log.servedAt(l.version, inWorkers) !== undefined;
    }
    return false;
  }, timeoutMs);
  return ok === true;
}

async function scrapeApply(p: Portico): Promise<ReturnType<typeof histogram>> {
  return histogram(await p.api('/metrics'), 'portico_worker_table_apply_seconds', 'change');
}

/** Upper bound of the bucket holding the p-th percentile of what was observed between two scrapes. */
function bucketPercentile(before: ReturnType<typeof histogram>, after: ReturnType<typeof histogram>, p: number): number | null {
  const n = after.count - before.count;
  if (n <= 0) return null;
  for (const [le, c] of after.buckets) {
    const was = before.buckets.find(([l]) => l === le)?.[1] ?? 0;
    if (c - was >= (p / 100) * n) return Number.isFinite(le) ? le * 1000 : null;
  }
  return null;
}

interface Round {
  quiet: WrkSample;
  churn?: WrkSample;
  resync?: WrkSample;
  reload?: WrkSample;
}

function wrkSummary(xs: WrkSample[]): { rps: number; p99Ms: number; errors: number; otherCpuS: number[] } {
  return {
    rps: Math.round(median(xs.map((s) => s.rps))),
    p99Ms: round(median(xs.map((s) => s.p99Ms))),
    errors: xs.reduce((a, s) => a + s.errors, 0),
    otherCpuS: xs.map((s) => s.otherCpuS ?? NaN),
  };
}

function against(load: WrkSample[], quiet: WrkSample[]) {
  const l = wrkSummary(load);
  const q = wrkSummary(quiet);
  return { ...l, rpsRatio: ratio(l.rps, q.rps), p99Ratio: ratio(l.p99Ms, q.p99Ms) };
}

async function marathonShape(shape: string, runs: number, nginx: Peer, d: MarathonDouble, apps: App[]): Promise<Record<string, unknown>> {
  const inWorkers = shape !== '0';
  const dir = await mkdtemp(path.join(os.tmpdir(), `portico-churn-m${shape}-`));
  const web = await freePort();
  const config = path.join(dir, 'portico.yaml');
  const secure = websecure && { port: await freePort(), ...websecure };
  await writeFile(config, marathonConfig({ shape, web, backend: nginx.port, marathon: d.url, websecure: secure }));
  const p = await startPortico({ dir, config, logLevel: 'debug' });
  const out: Record<string, unknown> = {};
  try {
    const start = await started(p, web, START_TIMEOUT_MS);
    out.start = start;
    reniceControl(p, inWorkers);
    const procs = p.processes();
    out.processes = byRole(procs);
    out.idleCpuPercent = await idleCpu(p);
    say(
      `  [marathon, workers: ${shape}] up ${start.upMs} ms after spawn (/v2/apps read at ${start.feedMs} ms, table published at ${start.tableMs} ms), first 200 at ${start.firstOkMs} ms; ${procs.map((x) => `${x.role} ${x.pid} nice ${x.nice}`).join(', ')}; idle CPU ${JSON.stringify(out.idleCpuPercent)} % ${elapsed()}`,
    );
    await wrk(web, 2); // warm-up (JIT), not measured
    const rounds: Round[] = [];
    const served: number[] = [];
    const published: number[] = [];
    const applied: number[] = [];
    const gaps: number[] = [];
    const unsound: string[] = [];
    const applyMs: number[] = [];
    const applyP99: number[] = [];
    const appliesPerChange: number[] = [];
    const perChange: number[] = [];
    const cpu: Array<Record<string, number>> = [];
    const rss: Array<Record<string, { rssMB: number[]; nice: number[] }>> = [];
    const resyncServed: number[] = [];
    const resyncRead: number[] = [];
    const resyncCuts: number[] = [];
    for (let r = 0; r < runs; r++) {
      const rd: Round = { quiet: await measure(p, web) };
      // 1. Endpoint churn.
      p.log.poll();
      const a0 = p.log.lastAggregatorVersion();
      const m0 = inWorkers ? await scrapeApply(p) : undefined;
      const cpu0 = p.processes();
      const sentAt: number[] = [];
      const load = measure(p, web);
      const t0 = performance.now();
      for (let i = 0; i < CHANGES; i++) {
        const wait = t0 + i * CHANGE_EVERY_MS - performance.now();
        if (wait > 0) await sleep(wait);
        const app = apps[(r * CHANGES + i) % SERVICES]!;
        sentAt.push(wallMs());
        d.pushEvent('status_update_event', moveTask(app));
      }
      for (let i = 1; i < sentAt.length; i++) gaps.push(sentAt[i]! - sentAt[i - 1]!);
      rd.churn = await load;
      const done = await allServed(p, a0, CHANGES, inWorkers, 60_000);
      const cpu1 = p.processes();
      const m = matchChanges(p, a0, sentAt, inWorkers);
      if (!done || !m.sound) unsound.push(`round ${r + 1}: ${m.changed} services changed in ${m.versions} versions for ${CHANGES} events`);
      else {
        served.push(...m.served);
        published.push(...m.published);
        applied.push(...m.applied);
      }
      if (m0) {
        const m1 = await scrapeApply(p);
        const n = m1.count - m0.count;
        applyMs.push(round(((m1.sum - m0.sum) / n) * 1000, 3));
        applyP99.push(bucketPercentile(m0, m1, 99) ?? NaN);
        appliesPerChange.push(round(n / CHANGES, 2));
        perChange.push(round(((m1.sum - m0.sum) * 1000) / CHANGES / Math.max(1, cpu1.filter((x) => x.role === 'worker').length), 3));
      }
      cpu.push(cpuByRole(cpu0, cpu1));
      rss.push(byRole(cpu1));
      // 2. Marathon resync: the stream is cut; the provider reconnects and reads the whole /v2/apps again, in
      //    which one more app moved (else a resync would change nothing and serve no version). Cut again as
      //    soon as that is served, until the run's last 1.5 s. The answers are serialised beforehand: 69 MB of
      //    JSON.stringify here would take a core from the machine while wrk measures.
      const bodies = resyncBodies(apps, r * CHANGES + CHANGES);
      const load2 = measure(p, web);
      const end = performance.now() + DURATION_S * 1000 - 1500;
      await sleep(500);
      let cuts = 0;
      for (const body of bodies) {
        if (performance.now() >= end) break;
        d.appsBody = body;
        p.log.poll();
        const b0 = p.log.lastAggregatorVersion();
        const reads0 = p.log.resynced.length;
        const cutAt = wallMs();
        d.dropStreams();
        cuts++;
        const at = await p.log.until(() => {
          const v = p.log.aggregator.find((l) => l.version > b0);
          return v && p.log.servedAt(v.version, inWorkers);
        }, 120_000);
        if (at) resyncServed.push(at.servedAt - cutAt);
        const read = p.log.resynced[reads0];
        if (read !== undefined) resyncRead.push(read - cutAt);
      }
      rd.resync = await load2;
      resyncCuts.push(cuts);
      // The answer Marathon gives from now on: the last one served (with every move made so far).
      d.appsBody = bodies[cuts - 1] ?? d.appsBody;
      rounds.push(rd);
      say(
        `  round ${r + 1}: quiet ${Math.round(rd.quiet.rps)} req/s p99 ${rd.quiet.p99Ms} ms; churn ${Math.round(rd.churn.rps)} req/s p99 ${rd.churn.p99Ms} ms (${m.versions} versions); resync ×${cuts} ${Math.round(rd.resync.rps)} req/s p99 ${rd.resync.p99Ms} ms; other load ${rd.quiet.otherCpuS}/${rd.churn.otherCpuS}/${rd.resync.otherCpuS} CPU-s ${elapsed()}`,
      );
    }
    const quiet = rounds.map((x) => x.quiet);
    const linesPerPid = [...p.log.linesByPid].map(([pid, c]) => ({ pid, role: procs.find((x) => x.pid === pid)?.role ?? 'other', ...c }));
    out.quiet = wrkSummary(quiet);
    out.endpointChurn = {
      changes: CHANGES,
      rounds: runs,
      sendGapMs: { median: round(median(gaps)), p99: round(percentile(gaps, 99)) },
      ...against(
        rounds.map((x) => x.churn!),
        quiet,
      ),
      servedMs: served.length
        ? { median: round(median(served)), p99: round(percentile(served, 99)), max: round(Math.max(...served)) }
        : null,
      // Of which: send → the control's pipeline published it (SSE, the provider's 20 ms batching, translation,
      // aggregation, stages), and, per version, published → every worker applied it (IPC via the supervisor).
      publishedMs: published.length ? { median: round(median(published)), p99: round(percentile(published, 99)) } : null,
      publishedToServedMs: applied.length ? { median: round(median(applied)), p99: round(percentile(applied, 99)) } : null,
      unmatched: unsound,
      // portico_worker_table_apply_seconds{kind="change"} between scrapes: per applied version and worker
      // (mean, and the bucket bound of the p99), and per change and worker (a version holds several changes).
      workerApply: inWorkers
        ? {
            meanMsPerApply: round(median(applyMs), 3),
            p99BucketMs: median(applyP99),
            appliesPerChange: median(appliesPerChange),
            msPerChangePerWorker: round(median(perChange), 3),
          }
        : null,
      cpuSecondsPerRound: cpu,
      controlCpuMsPerChange: round((median(cpu.map((c) => c.control ?? NaN)) * 1000) / CHANGES, 3),
      rssAfter1000: rss[0],
      rssAfterAll: rss.at(-1),
    };
    out.marathonResync = {
      bodyMB: round((d.appsBody?.length ?? 0) / 2 ** 20, 1),
      ...against(
        rounds.map((x) => x.resync!),
        quiet,
      ),
      resyncsPerRun: resyncCuts,
      cutToReadMs: resyncRead.length ? { median: Math.round(median(resyncRead)), max: Math.round(Math.max(...resyncRead)) } : null,
      cutToServedMs: resyncServed.length ? { median: Math.round(median(resyncServed)), max: Math.round(Math.max(...resyncServed)) } : null,
    };
    out.log = { level: 'debug', linesByProcess: linesPerPid };
  } finally {
    await p.stop();
  }
  return out;
}

async function fileShape(shape: string, runs: number, nginx: Peer): Promise<Record<string, unknown>> {
  const inWorkers = shape !== '0';
  const dir = await mkdtemp(path.join(os.tmpdir(), `portico-churn-f${shape}-`));
  const web = await freePort();
  const config = path.join(dir, 'portico.yaml');
  let marker = 0;
  const text = fileConfig(shape, web, nginx.port, marker);
  await writeFile(config, text);
  const p = await startPortico({ dir, config, logLevel: 'debug' });
  const out: Record<string, unknown> = { fileMB: round(text.length / 2 ** 20, 1) };
  try {
    const start = await started(p, web, START_TIMEOUT_MS);
    out.start = start;
    reniceControl(p, inWorkers);
    out.processes = byRole(p.processes());
    out.idleCpuPercent = await idleCpu(p);
    say(
      `  [config file ${out.fileMB} MB, workers: ${shape}] up ${start.upMs} ms after spawn (file loaded at ${start.feedMs} ms, table published at ${start.tableMs} ms), first 200 at ${start.firstOkMs} ms`,
    );
    await wrk(web, 2);
    const quiet: WrkSample[] = [];
    const loaded: WrkSample[] = [];
    const saveToServed: number[] = [];
    for (let r = 0; r < runs; r++) {
      quiet.push(await measure(p, web));
      const load = measure(p, web);
      const until = performance.now() + DURATION_S * 1000 - 1500;
      while (performance.now() < until) {
        marker++;
        const next = fileConfig(shape, web, nginx.port, marker);
        p.log.poll();
        const a0 = p.log.lastAggregatorVersion();
        const at = wallMs();
        await writeAtomic(config, next);
        const s = await p.log.until(() => {
          const v = p.log.aggregator.find((l) => l.version > a0);
          return v && p.log.servedAt(v.version, inWorkers);
        }, 60_000);
        if (s) saveToServed.push(s.servedAt - at);
      }
      loaded.push(await load);
      say(
        `  round ${r + 1}: quiet ${Math.round(quiet[r]!.rps)} req/s p99 ${quiet[r]!.p99Ms} ms; reloading ${Math.round(loaded[r]!.rps)} req/s p99 ${loaded[r]!.p99Ms} ms; other load ${quiet[r]!.otherCpuS}/${loaded[r]!.otherCpuS} CPU-s ${elapsed()}`,
      );
    }
    out.quiet = wrkSummary(quiet);
    out.configReload = {
      saves: saveToServed.length,
      ...against(loaded, quiet),
      saveToServedMs: saveToServed.length ? { median: Math.round(median(saveToServed)), max: Math.round(Math.max(...saveToServed)) } : null,
    };
  } finally {
    await p.stop();
  }
  return out;
}

// ─── The run ───────────────────────────────────────────────────────────────────────────────────────

export async function main(): Promise<void> {
  if (!which('wrk')) throw new Error('churn bench needs wrk (apt-get install wrk)');
  const nginxBin = which('nginx') ?? (which('/usr/sbin/nginx') ? '/usr/sbin/nginx' : undefined);
  if (!nginxBin) throw new Error('churn bench needs nginx (apt-get install nginx-light)');
  say('building dist/ (Portico runs compiled, as npm start runs it)');
  await buildDist();
  say(
    `churn: ${SERVICES} services, ${SERVICES * TASKS_PER_APP} endpoints; wrk -t1 -c${CONNECTIONS} ${DURATION_S} s ${pinned ? 'on cpu 0 (taskset), Portico, nginx and the fake Marathon unpinned' : '(not pinned)'}; shapes workers: ${SHAPES.join(', ')}; load1 ${os.loadavg()[0]!.toFixed(2)}`,
  );
  const nginx = await startNginx('churn-backend', nginxBin, `server { listen 127.0.0.1:PORT; location / { return 200 "ok\\n"; } }`);
  backend = nginx;
  const certDir = await mkdtemp(path.join(os.tmpdir(), 'portico-churn-cert-'));
  if (process.env.BENCH_CHURN_NO_WEBSECURE !== '1' && which('openssl')) websecure = await makeCert(certDir, '*.example.test');
  say(websecure ? 'websecure: a self-signed certificate (openssl)' : 'no websecure entrypoint: the https routes are table warnings');
  const d = new MarathonDouble();
  const results: Record<string, Record<string, unknown>> = {};
  try {
    const apps = clusterApps();
    d.apps = apps;
    d.appsBody = Buffer.from(JSON.stringify({ apps }));
    await d.start();
    results.setup = {
      apps: SERVICES,
      tasks: SERVICES * TASKS_PER_APP,
      appsMB: round(d.appsBody.length / 2 ** 20, 1),
      vips: VIPS,
      websecure: websecure !== undefined,
      pinning: pinned ? 'wrk on cpu 0 (taskset); Portico, nginx and the fake Marathon unpinned' : 'none',
      logLevel: 'debug',
      accessLog: false,
    };
    say(`fake Marathon on ${d.url}: ${SERVICES} apps × ${TASKS_PER_APP} tasks, /v2/apps ${round(d.appsBody.length / 2 ** 20, 1)} MB`);
    for (const shape of SHAPES) {
      const runs = shape === 'auto' ? RUNS : Math.min(RUNS, COMPARE_RUNS);
      const r: Record<string, unknown> = { runs };
      if (FEEDS.has('marathon')) r.marathon = await marathonShape(shape, runs, nginx, d, apps);
      if (FEEDS.has('file')) r.file = await fileShape(shape, runs, nginx);
      results[`workers:${shape}`] = r;
    }
  } finally {
    await d.stop();
    await nginx.stop();
    await rm(certDir, { recursive: true, force: true });
  }
  say(`churn bench took ${Math.round((Date.now() - began) / 1000)} s`);
  type M = {
    start: Start;
    endpointChurn: {
      rpsRatio: number | null;
      p99Ratio: number | null;
      servedMs: { median: number; p99: number } | null;
      workerApply: { meanMsPerApply: number; msPerChangePerWorker: number } | null;
    };
    marathonResync: { rpsRatio: number | null; p99Ratio: number | null };
  };
  type F = { start: Start; configReload: { rpsRatio: number | null; p99Ratio: number | null } };
  const main = results['workers:auto'] ?? results[`workers:${SHAPES[0]}`];
  const m = main?.marathon as M | undefined;
  const f = main?.file as F | undefined;
  const ratios: Record<string, number | null> = {
    churnRps: m?.endpointChurn.rpsRatio ?? null,
    churnP99: m?.endpointChurn.p99Ratio ?? null,
    resyncRps: m?.marathonResync.rpsRatio ?? null,
    resyncP99: m?.marathonResync.p99Ratio ?? null,
    reloadRps: f?.configReload.rpsRatio ?? null,
    reloadP99: f?.configReload.p99Ratio ?? null,
  };
  for (const [k, v] of Object.entries(ratios)) if (v !== null) say(`${k}: ${v}×`);
  const atLeast = (v: number | null | undefined, g: number) => (v === null || v === undefined ? null : v >= g);
  const atMost = (v: number | null | undefined, g: number) => (v === null || v === undefined ? null : v <= g);
  report({
    bench: 'churn',
    runs: RUNS,
    results,
    ratios,
    goals: {
      churnRps: { goal: '≥0.9× quiet', met: atLeast(ratios.churnRps, 0.9) },
      churnP99: { goal: '≤1.2× quiet', met: atMost(ratios.churnP99, 1.2) },
      servedP99: { goal: '≤10 ms', met: atMost(m?.endpointChurn.servedMs?.p99, 10) },
      dataPlaneCpu: {
        goal: '≤2 ms per change',
        met: atMost(m?.endpointChurn.workerApply?.meanMsPerApply, 2),
        judgedOn:
          'mean decode + apply of one version in one worker (wall time there; a version holds several changes: see appliesPerChange)',
      },
      resyncRps: { goal: '≥0.9× quiet', met: atLeast(ratios.resyncRps, 0.9) },
      resyncP99: { goal: '≤1.2× quiet', met: atMost(ratios.resyncP99, 1.2) },
      reloadRps: { goal: '≥0.9× quiet', met: atLeast(ratios.reloadRps, 0.9) },
      reloadP99: { goal: '≤1.2× quiet', met: atMost(ratios.reloadP99, 1.2) },
      startMarathon: { goal: '≤3 s to serving', met: atMost(m?.start.firstOkMs, 3000) },
      startFile: { goal: '≤3 s to serving', met: atMost(f?.start.firstOkMs, 3000) },
    },
  });
}
