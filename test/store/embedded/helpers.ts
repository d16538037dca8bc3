/** Shared by the embedded store's recovery and LOCK tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { Test } from 'tap';
import { createLogger } from '../../../src/telemetry/log.js';
import { Recorder, withTimeout } from '../../helpers/wait.js';

export const ROOT = path.join(__dirname, '..', '..', '..');

/** pino's numeric levels. */
export const WARN = 40;
export const ERROR = 50;

/** A fresh directory for one test (removed at its end); the store goes in `<dir>/store`. */
export async function tmpDir(t: Test): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-store-'));
  t.teardown(() => fsp.rm(d, { recursive: true, force: true }));
  return d;
}

export type LogLine = Record<string, unknown> & { level: number; msg: string };

/** A logger whose JSON lines land in `lines`, to assert on warnings and errors. */
export function capture(): { logger: ReturnType<typeof createLogger>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write: (s: string) => {
        lines.push(JSON.parse(s) as LogLine);
      },
    },
  });
  return { logger, lines };
}

/** Byte offsets of the frames in a journal or snapshot file (magic | len | crc | payload). */
export function frameOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off + 12 <= buf.length;) {
    out.push(off);
    off += 12 + buf.readUInt32LE(off + 4);
  }
  return out;
}

export async function bootId(): Promise<string> {
  return (await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
}

/** The pid of a process that has exited (and been reaped). */
export async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

/** A `sleep` child: a live process that is not Portico. Killed at the end of the test. */
export async function sleeper(t: Test): Promise<number> {
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  return child.pid!;
}

export interface Holder {
  child: ChildProcess;
  pid: number;
  lines: Recorder<string>;
  send(line: string): void;
  exited: Promise<void>;
}

/** Start test/store/fixtures/holder.ts on `dir` (killed at the end of the test if still running). */
export function startHolder(t: Test, dir: string, mode: 'hold' | 'race' = 'hold'): Holder {
  const fixture = path.join(ROOT, 'test', 'store', 'fixtures', 'holder.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir, mode], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = new Recorder<string>();
  readline.createInterface({ input: child.stdout! }).on('line', lines.push);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, pid: child.pid!, lines, send: (line) => child.stdin!.write(`${line}\n`), exited };
}

/** Wait for the holder's answer to its open: `won`, or the refusal's message. */
export async function outcome(h: Holder): Promise<string> {
  return h.lines.until((l) => l === 'won' || l.startsWith('refused '), 30_000, `holder ${h.pid} to open the store`);
}

export async function killAndWait(h: Holder): Promise<void> {
  h.child.kill('SIGKILL');
  await withTimeout(h.exited, 10_000, `holder ${h.pid} to exit`);
}
