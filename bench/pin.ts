/**
 * Where the servers and the load generator run, for the benches that measure scaling across cores
 * (`l7`, `dns`). On the 2-core benchmark machine the load generator has to share the cores with the
 * server; the scheme gives every peer at a given thread count the same placement:
 *
 *   - a 1-thread server (HAProxy `nbthread 1`, nginx 1 worker, unbound 1 thread, dnsmasq, http-proxy,
 *     Portico `workers: 1`) alone on CPU 1, the load generator (wrk, autocannon, openssl s_time, dnsperf)
 *     on CPU 0: a whole core that nothing of the bench but the server runs on;
 *   - a 2-thread server (`nbthread 2`, 2 workers, `num-threads: 2`, Portico `workers: auto`) on CPUs 0-1,
 *     and the load generator floats over both: the kernel puts it where there is room, so no core idles
 *     while the other is overloaded. (Pinning the client to CPU 0 as well was tried and measured: the
 *     server's thread on CPU 0 starved beside the client while CPU 1 idled 20–30%, and HAProxy and nginx
 *     with 2 threads came out 5–15% *slower* than with one — an artefact of the pinning, not of the peers.)
 *   - the rest of the client side — the L7 backend (nginx `return 200`) and this harness — on CPU 0 always
 *     (a floating backend measured worse again: 85–88k req/s through HAProxy-2 against 95–99k).
 *
 * So the 2-thread shape may use CPU 1 and whatever the client side leaves of CPU 0: its scaling
 * (2-thread ÷ 1-thread) is capped well below 2× — a server fast enough that the client side already needs
 * most of CPU 0 to drive its 1-thread shape (HAProxy, nginx: ~0.9 of it here) has almost nothing to gain,
 * alike for every peer at a given load. The per-run figures show it: the cores the server, the load
 * generator and the backend used, each CPU's busy fraction, and `limit`. On a machine with more cores a
 * k-thread server gets CPUs 1..k while it fits beside the client's CPU 0 (the client then stays on CPU 0),
 * and all CPUs otherwise. Without taskset or with one CPU nothing is pinned.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { which } from './lib.js';

export const CPUS = os.cpus().length;
export const PIN = CPUS >= 2 && !!which('taskset');

/** The client side's own CPU (taskset list: the backend, this harness), or undefined when nothing is pinned. */
export const CLIENT_CPUS: string | undefined = PIN ? '0' : undefined;

/** The CPUs of a server with `threads` threads / workers / processes serving. */
export function serverCpus(threads: number): string | undefined {
  if (!PIN) return undefined;
  return threads <= CPUS - 1 ? (threads === 1 ? '1' : `1-${threads}`) : `0-${CPUS - 1}`;
}

/** Whether a `threads`-thread server shares the client's CPU (then the load generator floats). */
export function sharesClientCpu(threads: number): boolean {
  return PIN && threads > CPUS - 1;
}

/** The load generator's CPUs when it drives a `threads`-thread server (0: no server, `direct`). */
export function loadCpus(threads: number): string | undefined {
  if (!PIN) return undefined;
  return sharesClientCpu(threads) ? `0-${CPUS - 1}` : CLIENT_CPUS;
}

/** `cmd args` run under `taskset -c cpus` (the program execs: same pid, its forks inherit the mask). */
export function pinned(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus === undefined ? [cmd, args] : ['taskset', ['-c', cpus, cmd, ...args]];
}

/** Moves this process (every thread of it) to the client side's CPUs, so the harness stays off the servers'. */
export function pinSelf(): void {
  if (CLIENT_CPUS === undefined) return;
  execFileSync('taskset', ['-a', '-p', '-c', CLIENT_CPUS, String(process.pid)], { stdio: 'ignore' });
}

/** One line for the bench's header output. */
export function describePinning(): string {
  if (!PIN) return `nothing pinned (${CPUS === 1 ? 'one CPU' : 'no taskset'}): servers and clients float`;
  return (
    `pinned with taskset: 1-thread servers alone on CPU ${serverCpus(1)}, the load generator on CPU ${loadCpus(1)}; ` +
    `2-thread servers on CPUs ${serverCpus(2)}, the load generator ${sharesClientCpu(2) ? `floating over CPUs ${loadCpus(2)}` : `on CPU ${loadCpus(2)}`}; ` +
    `the backend and the harness on CPU ${CLIENT_CPUS} always`
  );
}

/** Busy, softirq and total jiffies per CPU since boot, from /proc/stat. */
export function cpuTimes(): Array<{ busy: number; softirq: number; total: number }> | undefined {
  try {
    const out: Array<{ busy: number; softirq: number; total: number }> = [];
    for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
      const m = /^cpu(\d+) (.*)$/.exec(line);
      if (!m) continue;
      const f = (m[2] as string).trim().split(/\s+/).map(Number);
      // user nice system idle iowait irq softirq steal (guest times are inside user/nice)
      const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
      const idle = (f[3] ?? 0) + (f[4] ?? 0);
      out[Number(m[1])] = { busy: total - idle, softirq: f[6] ?? 0, total };
    }
    return out;
  } catch {
    return undefined;
  }
}

/**
 * Each CPU's busy fraction between two cpuTimes() readings (0..1, two decimals), and the part of it spent
 * in softirq: loopback packet processing, which the kernel charges to no process (so a server's own CPU
 * time does not include it, and a core can be busy while its server uses less than all of it).
 */
export function busyBetween(
  a: ReturnType<typeof cpuTimes>,
  b: ReturnType<typeof cpuTimes>,
): { busy: number[]; softirq: number[] } | undefined {
  if (!a || !b) return undefined;
  const frac = (k: 'busy' | 'softirq') =>
    b.map((x, i) => {
      const y = a[i];
      const dt = y ? x.total - y.total : 0;
      return y && dt > 0 ? Math.round(((x[k] - y[k]) / dt) * 100) / 100 : NaN;
    });
  return { busy: frac('busy'), softirq: frac('softirq') };
}

/** A CPU this busy during a run counts as saturated (other work on the machine counts too: a heuristic). */
export const SATURATED = 0.9;

/**
 * What most likely bounded a run, from its per-CPU busy fractions, the cores the load generator used, and
 * the pinning: `server` (a server alone on its CPUs saturated them), `client` (the load generator's CPU was
 * saturated and the server's was not, or the one-thread load generator used a whole core: the figure is
 * the load generator's ceiling, not the server's), `all CPUs` (a server sharing the client's CPU, and every
 * CPU saturated: the machine's ceiling), or `neither` (latency-bound). Undefined when nothing is pinned.
 */
export function limitOf(threads: number, busy: number[] | undefined, clientCores?: number): string | undefined {
  if (!PIN || !busy || threads < 1) return undefined;
  const at = (i: number) => (busy[i] ?? 0) >= SATURATED;
  const cpus = serverCpus(threads) as string;
  const [lo, hi] = cpus.split('-').map(Number) as [number, number | undefined];
  const server = Array.from({ length: (hi ?? lo) - lo + 1 }, (_, i) => lo + i);
  const clientSaturated = (clientCores ?? 0) >= SATURATED;
  if (sharesClientCpu(threads)) return busy.every((_, i) => at(i)) ? 'all CPUs' : clientSaturated ? 'client' : 'neither';
  if (server.every(at)) return 'server';
  return at(Number(CLIENT_CPUS)) || clientSaturated ? 'client' : 'neither';
}

/**
 * Cores busy during a run with work that is none of the bench's (other processes on a shared machine):
 * every CPU's busy fraction, less softirq and the cores the bench's own processes used. A noisy run shows
 * here (roughly: the kernel's accounting of the bench's processes and of softirq is not exact).
 */
export function otherCores(busy: { busy: number[]; softirq: number[] } | undefined, ...own: Array<number | undefined>): number | undefined {
  if (!busy) return undefined;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const x = sum(busy.busy) - sum(busy.softirq) - own.reduce<number>((a, b) => a + (b ?? 0), 0);
  return Math.max(0, Math.round(x * 100) / 100);
}

/** A line warning that other work took CPU during the runs (median of the runs' otherCores), or undefined. */
export function noiseWarning(others: number[]): string | undefined {
  const s = [...others].sort((a, b) => a - b);
  const mid = s[s.length >> 1];
  const worst = s[s.length - 1];
  if (mid === undefined || worst === undefined || worst < 0.2) return undefined;
  return (
    `noise: work other than the bench's took ${mid} cores in the median run, ${worst} at worst (of ${CPUS}): ` +
    'the runs it hit are low and the 1-thread ones suffer most (their server cannot move off its core); rerun on a quiet machine'
  );
}
