/**
 * Run the real `portico` command (bin/portico, from the TypeScript sources) as a child process and
 * follow its structured (pino JSON) log on stdout, so tests wait on what it says, not on timers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

export const BIN = path.join(__dirname, '..', '..', 'bin', 'portico');

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export interface PorticoProcess {
  proc: ChildProcess;
  logs: LogLine[];
  stderr: string[];
  /** Resolves with the first log line (already seen or future) matching `pred`; rejects after timeoutMs. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number, fromIndex?: number): Promise<LogLine>;
  /** Resolves with the exit code; rejects after timeoutMs. */
  waitForExit(timeoutMs?: number): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

export function runPortico(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): PorticoProcess {
  const proc = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...process.env, PORTICO_FROM_SOURCE: '1', PORTICO_LOG_LEVEL: 'debug', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  let exitCode: number | null | undefined;
  readline.createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      logs.push({ level: 30, msg: line });
    }
    for (const w of [...waiters]) w();
  });
  readline.createInterface({ input: proc.stderr! }).on('line', (line) => {
    stderr.push(line);
  });
  proc.on('exit', (code) => {
    exitCode = code;
    for (const w of [...waiters]) w();
  });

  function waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = () => {
        const v = check();
        if (v !== undefined) {
          clearTimeout(timer);
          waiters.delete(done);
          resolve(v);
        } else if (exitCode !== undefined && what !== 'exit') {
          clearTimeout(timer);
          waiters.delete(done);
          reject(new Error(`portico exited (${exitCode}) before ${what}; stderr: ${stderr.join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(done);
        reject(
          new Error(
            `timed out after ${timeoutMs}ms waiting for ${what}; last logs: ${JSON.stringify(logs.slice(-5))}; stderr: ${stderr.join('\n')}`,
          ),
        );
      }, timeoutMs);
      waiters.add(done);
      done();
    });
  }

  return {
    proc,
    logs,
    stderr,
    waitForLog: (pred, timeoutMs = 15_000, fromIndex = 0) =>
      waitFor(() => logs.slice(fromIndex).find(pred), timeoutMs, 'a matching log line'),
    waitForExit: (timeoutMs = 15_000) =>
      waitFor(() => (exitCode === undefined ? undefined : { code: exitCode }), timeoutMs, 'exit').then((x) => x.code),
    kill: (signal = 'SIGTERM') => {
      if (exitCode === undefined) proc.kill(signal);
    },
  };
}
