/**
 * `npm run bench -- start`: how long `portico up` (the compiled build: a supervisor, a control process and
 * `workers: auto` data-plane workers) takes from spawn to serving at cluster size — 10,000 services,
 * 100,000 endpoints (bench/cluster.ts, the churn bench's cluster) — fed by a fake Marathon (~69 MB
 * `/v2/apps`) or by a ~5 MB config file. Goal (issue #15): ≤3 s.
 *
 * Serving is two things, both timed from the spawn: the first 200 through the L7 route (polled every 20 ms)
 * and the control's `table served` line (every worker applied the first table; `portico is up` follows).
 * Where the time went comes from the log: the control's `portico is up` and each worker's `worker:
 * serving` carry the end of each of their start steps (src/telemetry/startup.ts) and the CPU they used, and
 * `whole table sent` when the control handed the first table over. The phases, in order:
 *
 *   control   spawn → the control process runs (the supervisor's start and fork), its modules, the config
 *             read and the store opened, the workers forked, each feed's first state, the first table
 *             (aggregate, stages), the table sent (encode), the workers serving it
 *   worker    spawn → the worker process runs, its modules, its planes created (init), the first table
 *             received (relayed by the supervisor), parsed, decoded, each plane started (l7, l4, dns)
 *
 * BENCH_START_RUNS rounds (default 5), each starting one Portico per feed in turn (BENCH_START_FEEDS=
 * marathon,file); medians. BENCH_START_WORKERS (default auto) is the `workers:` key. Like the churn bench:
 * BENCH_PORTICO_NODE_ARGS (e.g. --cpu-prof --cpu-prof-dir=/tmp/p) and BENCH_KEEP=1 (bench/portico-proc.ts).
 * On shared cores read the CPU columns beside the wall clock: the machine's other load is reported per run.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MarathonDouble } from '../test/providers/marathon/api-double.js';
import { clusterApps, fileConfig, marathonConfig, SERVICES, started, TASKS_PER_APP } from './cluster.js';
import { makeCert, median, report, round, say, which } from './lib.js';
import { freePort } from './peers.js';
import { buildDist, machineBusyS, startPortico, type Portico } from './portico-proc.js';

const RUNS = Number(process.env.BENCH_START_RUNS ?? 5);
const FEEDS = (process.env.BENCH_START_FEEDS ?? 'marathon,file').split(',').map((s) => s.trim());
const WORKERS = process.env.BENCH_START_WORKERS ?? 'auto';
const TIMEOUT_MS = 180_000;
const GOAL_MS = 3_000;
/** The log lines the timeline is read from. */
const KEEP = ['portico is up', 'worker: serving', 'whole table sent'];

type Line = Record<string, unknown> & { time: number };

/** One start: ms after the spawn (`at`), step durations (`phases`: wall clock; `cpuPhases`: CPU), CPU ms by process. */
interface StartRun {
  firstOkMs: number;
  servedMs: number;
  upMs: number;
  at: Record<string, number>;
  phases: Record<string, number>;
  cpuPhases: Record<string, number>;
  cpuMs: Record<string, number>;
  /** CPU seconds the machine spent on anything but Portico meanwhile (this bench, other sessions). */
  otherCpuS: number;
}

/** A process's steps from its line: wall ms after the spawn (`process`: when it started), and CPU ms used by then. */
function stepsOf(line: Line, spawnedAt: number): { at: Record<string, number>; cpu: Record<string, number> } {
  const origin = Number(line.processStart);
  const at: Record<string, number> = { process: Math.round(origin - spawnedAt) };
  for (const [k, v] of Object.entries((line.startMs ?? {}) as Record<string, number>)) at[k] = Math.round(origin + v - spawnedAt);
  return { at, cpu: { ...((line.startCpuMs ?? {}) as Record<string, number>) } };
}

/** Durations between consecutive steps (in the order given, from 0), named `prefix` + the step they end. */
function durations(at: Record<string, number>, order: string[], prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  let last = 0;
  for (const k of order) {
    const v = at[k];
    if (v === undefined) continue;
    out[`${prefix}${k}`] = v - last;
    last = v;
  }
  return out;
}

const WORKER_STEPS = ['modules', 'init', 'received', 'parsed', 'decoded', 'plane.l7', 'plane.l4', 'plane.dns'];

async function oneStart(p: Portico, web: number): Promise<StartRun> {
  const start = await started(p, web, TIMEOUT_MS);
  const up = p.log.kept.get('portico is up')?.[0];
  if (!up) throw new Error('no `portico is up` line');
  // Every worker's line (they are written before `portico is up`, by other processes).
  const forked = p.processes().filter((x) => x.role === 'worker').length;
  const workers =
    (await p.log.until(() => {
      const lines = p.log.kept.get('worker: serving') ?? [];
      return lines.length >= forked && lines;
    }, 5_000)) ??
    p.log.kept.get('worker: serving') ??
    [];
  const sent = p.log.kept.get('whole table sent')?.[0];
  const control = stepsOf(up, p.spawnedAt);
  const feeds = Object.keys(control.at)
    .filter((k) => k.startsWith('feed.'))
    .sort((a, b) => (control.at[a] ?? 0) - (control.at[b] ?? 0));
  const controlSteps = ['modules', 'config', 'workers', ...feeds, 'table', 'planes', 'up'];
  const at: Record<string, number> = {};
  for (const [k, v] of Object.entries(control.at)) at[`control.${k}`] = v;
  if (sent) at['control.sent'] = Math.round(sent.time - p.spawnedAt);
  // The worker that served last gates the table: its steps.
  const each = workers.map((w) => stepsOf(w, p.spawnedAt));
  const last = each.sort((a, b) => (a.at['plane.dns'] ?? 0) - (b.at['plane.dns'] ?? 0)).at(-1) ?? { at: {}, cpu: {} };
  for (const [k, v] of Object.entries(last.at)) at[`worker.${k}`] = v;
  const phases = durations(control.at, ['process', ...controlSteps.slice(0, -2)], 'control.');
  if (sent && control.at.table !== undefined) phases['control.sent'] = Math.round(sent.time - p.spawnedAt) - control.at.table;
  Object.assign(phases, durations(last.at, ['process', ...WORKER_STEPS], 'worker.'));
  const cpuPhases = {
    ...durations(control.cpu, controlSteps, 'control.'),
    ...durations(last.cpu, WORKER_STEPS, 'worker.'),
  };
  const cpuMs: Record<string, number> = { control: control.cpu.up ?? NaN };
  each.forEach((w, i) => (cpuMs[`worker${i}`] = w.cpu['plane.dns'] ?? NaN));
  const sup = p.processes().find((x) => x.role === 'supervisor');
  if (sup) cpuMs.supervisor = Math.round(sup.cpuS * 1000);
  const servedAt = WORKERS === '0' ? p.log.pipeline[0]?.time : Math.max(...each.map((w) => w.at['plane.dns'] ?? NaN)) + p.spawnedAt;
  return {
    firstOkMs: start.firstOkMs,
    servedMs: Math.round((servedAt ?? NaN) - p.spawnedAt),
    upMs: start.upMs,
    at,
    phases,
    cpuPhases,
    cpuMs,
    otherCpuS: 0,
  };
}

function medians(runs: StartRun[]): Record<string, unknown> {
  const keys = (pick: (r: StartRun) => Record<string, number>) => [...new Set(runs.flatMap((r) => Object.keys(pick(r))))];
  const med = (pick: (r: StartRun) => Record<string, number>) =>
    Object.fromEntries(
      keys(pick).map((k) => [k, Math.round(median(runs.map((r) => pick(r)[k]).filter((v): v is number => v !== undefined)))]),
    );
  return {
    firstOkMs: Math.round(median(runs.map((r) => r.firstOkMs))),
    servedMs: Math.round(median(runs.map((r) => r.servedMs))),
    upMs: Math.round(median(runs.map((r) => r.upMs))),
    firstOkEachMs: runs.map((r) => r.firstOkMs),
    phasesMs: med((r) => r.phases),
    cpuPhasesMs: med((r) => r.cpuPhases),
    atMs: med((r) => r.at),
    cpuMs: med((r) => r.cpuMs),
    otherCpuS: runs.map((r) => r.otherCpuS),
  };
}

export async function main(): Promise<void> {
  say('building dist/ (Portico runs compiled, as npm start runs it)');
  await buildDist();
  say(
    `start: ${SERVICES} services, ${SERVICES * TASKS_PER_APP} endpoints; feeds ${FEEDS.join(', ')}; workers: ${WORKERS}; ${RUNS} runs; load1 ${os.loadavg()[0]!.toFixed(2)}`,
  );
  // The L7 route's backend: anything that answers 200.
  const backend = http.createServer((_req, res) => res.end('ok\n'));
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const backendPort = (backend.address() as AddressInfo).port;
  const certDir = await mkdtemp(path.join(os.tmpdir(), 'portico-start-cert-'));
  const websecure = which('openssl') ? await makeCert(certDir, '*.example.test') : undefined;
  const d = new MarathonDouble();
  const results: Record<string, Record<string, unknown>> = {};
  const runs: Record<string, StartRun[]> = Object.fromEntries(FEEDS.map((f) => [f, []]));
  try {
    const apps = clusterApps();
    d.apps = apps;
    d.appsBody = Buffer.from(JSON.stringify({ apps }));
    await d.start();
    const fileText = (web: number) => fileConfig(WORKERS, web, backendPort, 0);
    results.setup = {
      apps: SERVICES,
      tasks: SERVICES * TASKS_PER_APP,
      appsMB: round(d.appsBody.length / 2 ** 20, 1),
      fileMB: round(fileText(10000).length / 2 ** 20, 1),
      workers: WORKERS,
      websecure: websecure !== undefined,
      logLevel: 'debug',
    };
    for (let r = 0; r < RUNS; r++) {
      for (const feed of FEEDS) {
        const dir = await mkdtemp(path.join(os.tmpdir(), `portico-start-${feed}-`));
        const web = await freePort();
        const config = path.join(dir, 'portico.yaml');
        const secure = websecure && { port: await freePort(), ...websecure };
        await writeFile(
          config,
          feed === 'file'
            ? fileText(web)
            : marathonConfig({ shape: WORKERS, web, backend: backendPort, marathon: d.url, websecure: secure }),
        );
        const busy0 = machineBusyS();
        const p = await startPortico({ dir, config, logLevel: 'debug', keep: KEEP });
        try {
          const one = await oneStart(p, web);
          const ours = Object.values(one.cpuMs).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0) / 1000;
          one.otherCpuS = round(Math.max(0, machineBusyS() - busy0 - ours), 1);
          runs[feed]!.push(one);
          const ph = Object.entries(one.phases)
            .map(([k, v]) => `${k} ${v}${one.cpuPhases[k] !== undefined ? `/${one.cpuPhases[k]}` : ''}`)
            .join(', ');
          say(
            `  [${feed} ${r + 1}] first 200 ${one.firstOkMs} ms, served ${one.servedMs} ms, up ${one.upMs} ms; cpu ${JSON.stringify(one.cpuMs)}; other load ${one.otherCpuS} CPU-s; wall/cpu ms: ${ph}`,
          );
        } finally {
          await p.stop();
        }
      }
    }
  } finally {
    await d.stop();
    await new Promise((resolve) => backend.close(resolve));
    await rm(certDir, { recursive: true, force: true });
  }
  for (const feed of FEEDS) {
    const m = medians(runs[feed]!);
    results[feed] = m;
    say(`${feed}: first 200 ${String(m.firstOkMs)} ms, served ${String(m.servedMs)} ms (medians of ${runs[feed]!.length})`);
    const cpu = m.cpuPhasesMs as Record<string, number>;
    say(`    ${'phase'.padEnd(24)} ${'wall ms'.padStart(8)} ${'cpu ms'.padStart(8)}`);
    for (const [k, v] of Object.entries(m.phasesMs as Record<string, number>))
      say(`    ${k.padEnd(24)} ${String(v).padStart(8)} ${String(cpu[k] ?? '').padStart(8)}`);
    say(`    cpu ms ${JSON.stringify(m.cpuMs)}`);
  }
  const first = (f: string) => (results[f]?.firstOkMs as number | undefined) ?? null;
  const atMost = (v: number | null) => (v === null ? null : v <= GOAL_MS);
  report({
    bench: 'start',
    runs: RUNS,
    results,
    ratios: {},
    goals: {
      startMarathon: {
        goal: `≤${GOAL_MS / 1000} s to serving`,
        met: atMost(first('marathon')),
        judgedOn: 'median spawn → first 200 on the L7 route',
      },
      startFile: {
        goal: `≤${GOAL_MS / 1000} s to serving`,
        met: atMost(first('file')),
        judgedOn: 'median spawn → first 200 on the L7 route',
      },
    },
  });
}
