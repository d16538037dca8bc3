/**
 * A `portico up` the benchmarks run as an operator does: the compiled build (`bin/portico up --config F`,
 * PORTICO_FROM_SOURCE=0), its pino JSON log in a file the bench reads as it grows (a file, not a pipe: a
 * bench busy elsewhere never makes Portico's synchronous log writes wait), and what /proc says of each of
 * its processes (supervisor, control, data-plane workers: RSS, nice, CPU time).
 *
 * The log is the clock: each line carries pino's `time` (wall clock, 1 ms), so "served at" is when the
 * process said so, not when the bench got round to reading it. The bench keeps only the lines it matches
 * tables with (see TableLog) and counts the rest by process.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = path.join(__dirname, '..');

/** `tsc -p tsconfig.build.json`, as bench/l7.ts does: Portico runs from dist/, never through tsx. */
export async function buildDist(): Promise<void> {
  await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], {
    timeout: 300_000,
  });
}

/** Wall-clock now in ms, with sub-ms precision (the log's `time` is the same clock, whole ms). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

export interface AggregatorLine {
  version: number;
  /** Services upserted + removed in this version ('all' for a whole rebuild: NaN). */
  changed: number;
  time: number;
}
export interface PipelineLine {
  version: number;
  /** The aggregator version the served table was built from. */
  built: number;
  time: number;
}
export interface ServedLine {
  version: number;
  time: number;
}

/**
 * The lines that say where a table is: the aggregator's `routing table published` (info: version, how many
 * services changed), the pipeline's `table published` (debug; `table served` when the planes are in the
 * control process: version, built = the aggregator version) and the control's `table served` (debug:
 * every live worker applied that version).
 */
export class TableLog {
  readonly aggregator: AggregatorLine[] = [];
  readonly pipeline: PipelineLine[] = [];
  readonly served: ServedLine[] = [];
  readonly resynced: number[] = [];
  readonly configLoaded: number[] = [];
  up: { time: number; api: string; tokenFile: string } | undefined;
  /** Whole lines (parsed, with `time` in ms) of the messages asked for in the constructor, by message. */
  readonly kept = new Map<string, Array<Record<string, unknown> & { time: number }>>();
  readonly linesByPid = new Map<number, { lines: number; bytes: number; debug: number }>();
  errors: string[] = [];
  private fd: number;
  private offset = 0;
  private carry = '';
  private readonly buf = Buffer.alloc(1 << 20);

  /** `keep`: messages whose whole lines to keep (in `kept`). */
  constructor(
    readonly file: string,
    private readonly keep: readonly string[] = [],
  ) {
    this.fd = openSync(file, 'r');
  }

  /** Read what was written since the last call. */
  poll(): void {
    for (;;) {
      const n = readSync(this.fd, this.buf, 0, this.buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      const text = this.carry + this.buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      this.carry = lines.pop() ?? '';
      for (const line of lines) this.line(line);
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  /** Poll until `pred` holds (returns its value) or `timeoutMs` passes (undefined). */
  async until<T>(pred: () => T | undefined | false, timeoutMs: number, everyMs = 10): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.poll();
      const v = pred();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }

  lastAggregatorVersion(): number {
    return this.aggregator.at(-1)?.version ?? 0;
  }

  /**
   * When aggregator version `a` was served by every plane: the first served table built from `a` or later,
   * then (planes in workers) the first `table served` of that version or later. Undefined: not yet.
   */
  servedAt(a: number, inWorkers: boolean): { publishedAt: number; servedAt: number } | undefined {
    const p = this.pipeline.find((l) => l.built >= a);
    if (!p) return undefined;
    if (!inWorkers) return { publishedAt: p.time, servedAt: p.time };
    const s = this.served.find((l) => l.version >= p.version);
    return s && { publishedAt: p.time, servedAt: s.time };
  }

  private line(line: string): void {
    if (line === '') return;
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const pid = Number(j.pid);
    const c = this.linesByPid.get(pid) ?? { lines: 0, bytes: 0, debug: 0 };
    c.lines++;
    c.bytes += line.length + 1;
    if (j.level === 20) c.debug++;
    this.linesByPid.set(pid, c);
    const time = Date.parse(String(j.time));
    const msg = String(j.msg);
    if (this.keep.includes(msg)) {
      const list = this.kept.get(msg) ?? [];
      list.push({ ...j, time });
      this.kept.set(msg, list);
    }
    if (msg === 'routing table published')
      this.aggregator.push({ version: Number(j.version), changed: typeof j.changed === 'number' ? j.changed : NaN, time });
    else if ((msg === 'table published' || msg === 'table served') && j.component === 'pipeline')
      this.pipeline.push({ version: Number(j.version), built: Number(j.built), time });
    else if (msg === 'table served' && j.component === 'workers') this.served.push({ version: Number(j.version), time });
    else if (msg === 'marathon state resynced') this.resynced.push(time);
    else if (msg === 'config loaded') this.configLoaded.push(time);
    else if (msg === 'portico is up') this.up = { time, api: String(j.api), tokenFile: String(j.tokenFile) };
    if (typeof j.level === 'number' && j.level >= 50 && this.errors.length < 20) this.errors.push(msg.slice(0, 300));
  }
}

export interface ProcInfo {
  pid: number;
  role: 'supervisor' | 'control' | 'worker' | 'other';
  rssMB: number;
  nice: number;
  /** CPU seconds so far (user + system). */
  cpuS: number;
}

function procStat(pid: number): { nice: number; cpuS: number; rssMB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after "(comm) ": state=0 … utime=11 stime=12 … nice=16 … rss (pages)=21.
  const pageKB = 4;
  return { cpuS: (Number(f[11]) + Number(f[12])) / 100, nice: Number(f[16]), rssMB: Math.round((Number(f[21]) * pageKB) / 1024) };
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
    } catch {
      // the thread is gone
    }
  }
  return out;
}

export interface Portico {
  proc: ChildProcess;
  dir: string;
  log: TableLog;
  /** Wall-clock ms of the spawn. */
  spawnedAt: number;
  /** The supervisor and its children, from /proc (empty once it is gone). */
  processes(): ProcInfo[];
  /** GET on the admin api with the bearer token (after `portico is up`). */
  api(p: string): Promise<string>;
  stop(): Promise<void>;
}

/** `keep`: log messages whose whole lines the TableLog keeps (`log.kept`). */
export async function startPortico(opts: { dir: string; config: string; logLevel: string; keep?: string[] }): Promise<Portico> {
  const logFile = path.join(opts.dir, 'portico.log');
  const out = openSync(logFile, 'w');
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    PORTICO_FROM_SOURCE: '0',
    PORTICO_LOG_LEVEL: opts.logLevel,
    // No access log: the peers log nothing either, and 20,000 lines a second would be the bench's load.
    PORTICO_ACCESS_LOG: 'off',
  };
  const spawnedAt = wallMs();
  // BENCH_PORTICO_NODE_ARGS: node flags for Portico (e.g. --cpu-prof --cpu-prof-dir=/tmp/p); the supervisor's
  // forks inherit them, so the control and the workers run with them too.
  const nodeArgs = (process.env.BENCH_PORTICO_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bin', 'portico'), 'up', '--config', opts.config], {
    cwd: opts.dir,
    env,
    stdio: ['ignore', out, 'pipe'],
  });
  closeSync(out);
  let stderr = '';
  proc.stderr?.on('data', (d) => {
    stderr = (stderr + String(d)).slice(-4096);
  });
  const log = new TableLog(logFile, opts.keep);
  const known = new Set<number>();
  const processes = (): ProcInfo[] => {
    const sup = proc.pid;
    if (sup === undefined || proc.exitCode !== null || proc.signalCode !== null) return [];
    const out: ProcInfo[] = [];
    const one = (pid: number, role: ProcInfo['role']) => {
      try {
        out.push({ pid, role, ...procStat(pid) });
        known.add(pid);
      } catch {
        // exited meanwhile
      }
    };
    one(sup, 'supervisor');
    for (const kid of childrenOf(sup)) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${kid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      one(kid, cmd.includes('__control') ? 'control' : cmd.includes('__worker') ? 'worker' : 'other');
    }
    return out;
  };
  let token: string | undefined;
  const api = async (p: string): Promise<string> => {
    if (!log.up) throw new Error('portico is not up');
    token ??= (await readFile(log.up.tokenFile, 'utf8')).trim();
    const u = new URL(p, log.up.api);
    return new Promise((resolve, reject) => {
      const req = http.get(u, { headers: { authorization: `Bearer ${token}` }, agent: false, timeout: 30_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${p}: ${res.statusCode} ${body.slice(0, 200)}`))));
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error(`${p}: timeout`)));
    });
  };
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    processes(); // remember the children's pids while they are there
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => {
        // Only the processes this Portico started, by pid.
        for (const pid of known) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
      }, 30_000);
      await exited;
      clearTimeout(timer);
    }
    log.close();
    // BENCH_KEEP=1 keeps the directory (config, data, portico.log) for a look afterwards.
    if (process.env.BENCH_KEEP === '1') process.stderr.write(`kept ${opts.dir}\n`);
    else await rm(opts.dir, { recursive: true, force: true });
  };
  proc.once('exit', (code, signal) => {
    if (code !== 0 && signal === null) process.stderr.write(`portico exited ${code}: ${stderr}\n`);
  });
  return { proc, dir: opts.dir, log, spawnedAt, processes, api, stop };
}

/** Resolves with the wall-clock ms of the first 200 from GET http://127.0.0.1:port/ (polled every 20 ms). */
export async function firstOk(port: number, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 2_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
    if (ok) return wallMs();
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Prometheus histogram `name` with label `kind`: sum, count and cumulative buckets (le → count). */
export function histogram(text: string, name: string, kind: string): { sum: number; count: number; buckets: Array<[number, number]> } {
  let sum = 0;
  let count = 0;
  const buckets: Array<[number, number]> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || !line.includes(`kind="${kind}"`)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${name}_sum`)) sum += value;
    else if (line.startsWith(`${name}_count`)) count += value;
    else if (line.startsWith(`${name}_bucket`)) {
      const le = /le="([^"]+)"/.exec(line)?.[1];
      if (le !== undefined) buckets.push([le === '+Inf' ? Infinity : Number(le), value]);
    }
  }
  return { sum, count, buckets };
}

/** CPU seconds the whole machine has been busy (every core: user, nice, system, irq, softirq, steal). */
export function machineBusyS(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return (user + nice + system + irq + softirq + steal) / 100;
}

/** CPU seconds of this process and of its children it has waited for (wrk runs, builds). */
export function selfCpuS(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}
