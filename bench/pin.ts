/**
 * Where the servers and the load generator run, for the benches that measure scaling across cores
 * (`l7`, `dns`). On the 2-core benchmark machine the load generator has to share the cores with the
 * server; the scheme keeps that sharing the same for every peer at a given thread count:
 *
 *   - the client side — the load generator (wrk, autocannon, openssl s_time, dnsperf), the L7 backend
 *     (nginx `return 200`) and this harness — always on CPU 0;
 *   - a 1-thread server (HAProxy `nbthread 1`, nginx 1 worker, unbound 1 thread, dnsmasq, http-proxy,
 *     Portico `workers: 1`) alone on CPU 1: a whole core that nothing else runs on;
 *   - a 2-thread server (`nbthread 2`, 2 workers, `num-threads: 2`, Portico `workers: auto`) on CPUs 0-1:
 *     CPU 1 plus whatever the client side leaves of CPU 0. The client stays on CPU 0 (it does not float
 *     onto CPU 1), so going from 1 to 2 threads changes one thing only: the server may also use CPU 0.
 *
 * So a 2-thread server can at best add what CPU 0 has spare: its scaling (2-thread ÷ 1-thread) is capped
 * below 2×, by the same amount for every peer at a given load (the per-CPU busy figures printed with
 * each run show it). On a machine with more cores a k-thread server gets CPUs 1..k while it fits beside
 * the client's CPU 0, and all CPUs otherwise. Without taskset or with one CPU nothing is pinned.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { which } from './lib.js';

export const CPUS = os.cpus().length;
export const PIN = CPUS >= 2 && !!which('taskset');

/** The client side's CPUs (taskset list), or undefined when nothing is pinned. */
export const CLIENT_CPUS: string | undefined = PIN ? '0' : undefined;

/** The CPUs of a server with `threads` threads / workers / processes serving. */
export function serverCpus(threads: number): string | undefined {
  if (!PIN) return undefined;
  return threads <= CPUS - 1 ? (threads === 1 ? '1' : `1-${threads}`) : `0-${CPUS - 1}`;
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
    `pinned with taskset: the client side (load generator, backend, harness) on CPU ${CLIENT_CPUS}; ` +
    `1-thread servers on CPU ${serverCpus(1)}; 2-thread servers on CPUs ${serverCpus(2)} (shared with the client)`
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
 * What most likely bounded a run, from its per-CPU busy fractions and the pinning: `server` (a 1-thread
 * server's own CPU was saturated), `client` (the client's CPU was, the server's was not: the figure is the
 * load generator's, not the server's), `all CPUs` (a 2-thread server and the client share saturated CPUs),
 * or `neither` (latency-bound). Undefined when nothing is pinned.
 */
export function limitOf(threads: number, busy: number[] | undefined): string | undefined {
  if (!PIN || !busy || threads < 1) return undefined;
  const client = Number(CLIENT_CPUS);
  const at = (i: number) => (busy[i] ?? 0) >= SATURATED;
  const cpus = serverCpus(threads) as string;
  const range = cpus.split('-').map(Number);
  const server = Array.from({ length: (range[1] ?? range[0]!) - range[0]! + 1 }, (_, i) => range[0]! + i);
  if (server.every(at)) return server.includes(client) ? 'all CPUs' : 'server';
  return at(client) ? 'client' : 'neither';
}
