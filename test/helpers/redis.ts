/**
 * A private redis-server per test file: its own port, its own data dir, no persistence unless asked,
 * and helpers to kill and restart it on the same port (to test a Redis that goes away and comes back).
 * Readiness is awaited on the server's own "Ready to accept connections" line and then a real PING,
 * with a deadline; there are no fixed sleeps.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TimeoutError } from './wait.js';

export interface RedisServerOptions {
  /** `--appendonly yes --appendfsync always`: every acknowledged write is fsync'd. Default: no persistence. */
  persistent?: boolean;
  /** Deadline for the server to answer PING. Default 10 s. */
  startTimeoutMs?: number;
  /** More redis-server arguments (`--replicaof 127.0.0.1 6379`). */
  args?: string[];
}

export interface RedisServer {
  url: string;
  port: number;
  dir: string;
  /** Last lines the server printed (for failure messages). */
  output: string[];
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit (a crash: nothing is flushed). */
  kill(): Promise<void>;
  /** Start again on the same port and dir (after stop or kill). */
  restart(): Promise<void>;
  /** Stop if running and remove the data dir. For t.teardown. */
  dispose(): Promise<void>;
}

/** Path of redis-server, or undefined (tests then skip with a reason instead of failing). */
export function redisServerPath(): string | undefined {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) if (fs.existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

/** A port nobody listens on right now (bind 0, read it, close). Racy in theory; start() retries. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when something on `port` answers a RESP PING with +PONG; rejects on any other outcome. */
export function ping(port: number, timeoutMs = 1000): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = '';
    const fail = (err: Error) => {
      sock.destroy();
      reject(err);
    };
    sock.setTimeout(timeoutMs, () => fail(new Error('PING timed out')));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) {
        sock.destroy();
        if (buf.startsWith('+PONG')) resolve();
        else reject(new Error(`unexpected PING reply ${JSON.stringify(buf)}`));
      }
    });
    sock.on('error', fail);
  });
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server is not installed');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-redis-'));
  const output: string[] = [];
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;
  let child: ChildProcess | undefined;
  let port = 0;

  const launch = async (p: number): Promise<void> => {
    const args = [
      '--port',
      String(p),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      '--save',
      '',
      '--logfile',
      '',
      '--loglevel',
      'notice',
      ...(opts.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
      ...(opts.args ?? []),
    ];
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(c);
    c.once('exit', () => live.delete(c));
    child = c;
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        c.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      const onLine = (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line) continue;
          output.push(line);
          if (output.length > 200) output.shift();
          if (line.includes('Ready to accept connections'))
            ping(p).then(
              () => finish(),
              (e: Error) => finish(e),
            );
        }
      };
      const onExit = (code: number | null, signal: string | null) =>
        finish(new Error(`redis-server exited (${code ?? signal}) before it was ready: ${output.slice(-5).join(' | ')}`));
      const timer = setTimeout(
        () => finish(new TimeoutError(`redis-server on port ${p} to answer PING`, startTimeoutMs, output.slice(-5).join(' | '))),
        startTimeoutMs,
      );
      c.stdout!.on('data', onLine);
      c.stderr!.on('data', onLine);
      c.once('exit', onExit);
    });
  };

  // A port found free can be taken before redis binds it; try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch(port);
      break;
    } catch (err) {
      if (child) {
        child.kill('SIGKILL');
        await waitExit(child);
      }
      if (attempt >= 2) {
        await fsp.rm(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const stopWith = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = waitExit(c);
    c.kill(signal);
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    dir,
    output,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    restart: async () => {
      await stopWith('SIGKILL');
      await launch(port);
    },
    dispose: async () => {
      await stopWith('SIGKILL');
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}

export interface SentinelServer {
  url: (masterName: string) => string;
  port: number;
  dispose(): Promise<void>;
}

export interface SentinelOptions {
  /** Sentinels that must agree the master is down. Default 1. */
  quorum?: number;
  /** Default 5000 ms. */
  downAfterMs?: number;
  /** Default Redis' own (3 min). */
  failoverTimeoutMs?: number;
}

/**
 * A redis-sentinel monitoring the master on `masterPort` as `masterName`. Ready when it has logged that
 * it monitors the master (`+monitor master …`) and then answers PING.
 */
export async function startSentinel(
  masterPort: number,
  masterName: string,
  timeoutMs = 10_000,
  opts: SentinelOptions = {},
): Promise<SentinelServer> {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server is not installed');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-sentinel-'));
  const port = await freePort();
  const conf = path.join(dir, 'sentinel.conf');
  await fsp.writeFile(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      'logfile ""',
      `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} ${opts.quorum ?? 1}`,
      `sentinel down-after-milliseconds ${masterName} ${opts.downAfterMs ?? 5000}`,
      ...(opts.failoverTimeoutMs ? [`sentinel failover-timeout ${masterName} ${opts.failoverTimeoutMs}`] : []),
    ].join('\n') + '\n',
  );
  const child = spawn(bin, [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const output: string[] = [];
  const dispose = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = waitExit(child);
      child.kill('SIGKILL');
      await exited;
    }
    await fsp.rm(dir, { recursive: true, force: true });
  };
  // Ready once it logs that it monitors the master (it listens before that), then a real PING.
  const monitoring = `+monitor master ${masterName} `;
  try {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      const onLine = (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (!line) continue;
          output.push(line);
          if (output.length > 200) output.shift();
          if (line.includes(monitoring))
            ping(port).then(
              () => finish(),
              (e: Error) => finish(e),
            );
        }
      };
      const onExit = (code: number | null, signal: string | null) =>
        finish(new Error(`redis-sentinel exited (${code ?? signal}): ${output.slice(-5).join(' | ')}`));
      const timer = setTimeout(
        () => finish(new TimeoutError(`redis-sentinel on port ${port} to monitor ${masterName}`, timeoutMs, output.slice(-5).join(' | '))),
        timeoutMs,
      );
      child.stdout!.on('data', onLine);
      child.stderr!.on('data', onLine);
      child.once('exit', onExit);
    });
  } catch (err) {
    await dispose();
    throw err;
  }
  return { url: (name) => `redis-sentinel://127.0.0.1:${port}/${name}`, port, dispose };
}
