/**
 * Shared pieces of the benchmarks: the machine description, medians and percentiles, peers that are
 * not installed, and the contract's closing JSON line:
 *   {"bench":"l7","machine":{...},"runs":3,"results":{"portico":{...},"haproxy":{...}},"ratios":{...}}
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface BenchReport {
  bench: string;
  runs: number;
  /** How the run was set up where it matters to reading it (pinning, …); printed after `runs`. */
  setup?: Record<string, unknown>;
  results: Record<string, Record<string, unknown> | { skipped: string }>;
  ratios: Record<string, number | null>;
  /** Each goal: what it is, whether this run met it, and anything else that qualifies it (what it was judged on …). */
  goals?: Record<string, { goal: string; met: boolean | null; [detail: string]: unknown }>;
}

export function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    load1: Number(os.loadavg()[0]?.toFixed(2)),
  };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i] as number;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return round(a / b, 3);
}

/** The path of an installed program, or undefined. */
export function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function report(r: BenchReport): void {
  process.stdout.write(
    `${JSON.stringify({ bench: r.bench, machine: machine(), runs: r.runs, ...(r.setup ? { setup: r.setup } : {}), results: r.results, ratios: r.ratios, ...(r.goals ? { goals: r.goals } : {}) })}\n`,
  );
}

/**
 * A self-signed P-256 certificate for `cn` (a wildcard works), valid one day, made by openssl in `dir`:
 * the files, and the PEM of both (HAProxy wants them in one file).
 */
export async function makeCert(dir: string, cn: string): Promise<{ certFile: string; keyFile: string; pem: string }> {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
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
      `/CN=${cn}`,
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  );
  const pem = `${await readFile(certFile, 'utf8')}${await readFile(keyFile, 'utf8')}`;
  return { certFile, keyFile, pem };
}
