/**
 * Starting the peers we measure against (HAProxy, nginx, http-proxy, a Node backend, Portico as
 * `portico up` runs it) as real processes on loopback ports, and stopping them. Each peer is configured
 * as the bench needs it: one worker / one thread unless asked for more, keep-alive to the backend, logs
 * off; optionally pinned to CPUs with taskset (see pin.ts for the scheme).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pinned } from './pin.js';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when a TCP connection to host:port succeeds; rejects after timeoutMs. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface Peer {
  name: string;
  port: number;
  proc?: ChildProcess;
  stop(): Promise<void>;
}

export async function tmpdir(prefix: string): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), `portico-bench-${prefix}-`));
}

/** `cpus`: a taskset CPU list the process (and what it forks) is confined to; absent, it floats. */
export function startProcess(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; cpus?: string | undefined } = {},
): ChildProcess {
  const [c, a] = pinned(opts.cpus, cmd, args);
  const proc = spawn(c, a, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d) => {
    err += String(d);
    if (err.length > 4096) err = err.slice(-4096);
  });
  proc.on('exit', (code, signal) => {
    if (code && code !== 0 && signal === null) process.stderr.write(`${path.basename(cmd)} exited ${code}: ${err}\n`);
  });
  return proc;
}

export async function stopProcess(proc: ChildProcess | undefined, timeoutMs = 5_000): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

/** nginx answering `return 200` (the shared backend), or proxying to one, with one worker unless told. */
export async function startNginx(
  name: string,
  nginxBin: string,
  server: string,
  opts: { workers?: number; cpus?: string | undefined } = {},
): Promise<Peer> {
  const dir = await tmpdir(name);
  const port = await freePort();
  const conf = `
worker_processes ${opts.workers ?? 1};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  ${server.replace(/PORT/g, String(port))}
}`;
  await writeFile(path.join(dir, 'nginx.conf'), conf);
  const proc = startProcess(nginxBin, ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { cpus: opts.cpus });
  await waitForPort(port);
  return {
    name,
    port,
    proc,
    stop: async () => {
      await stopProcess(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function startHaproxy(
  haproxyBin: string,
  frontend: (port: number) => string,
  opts: { name?: string; threads?: number; cpus?: string | undefined } = {},
): Promise<Peer> {
  const name = opts.name ?? 'haproxy';
  const dir = await tmpdir(name);
  const port = await freePort();
  const conf = `
global
  nbthread ${opts.threads ?? 1}
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
${frontend(port)}
`;
  await writeFile(path.join(dir, 'haproxy.cfg'), conf);
  const proc = startProcess(haproxyBin, ['-f', path.join(dir, 'haproxy.cfg'), '-db'], { cpus: opts.cpus });
  await waitForPort(port);
  return {
    name,
    port,
    proc,
    stop: async () => {
      await stopProcess(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A Node script run as its own process (http-proxy peer, Node backend). The script prints nothing. */
export async function startNodeScript(
  name: string,
  source: string,
  port: number,
  extraArgs: string[] = [],
  opts: { cpus?: string | undefined } = {},
): Promise<Peer> {
  const dir = await tmpdir(name);
  const file = path.join(dir, `${name}.js`);
  await writeFile(file, source);
  const proc = startProcess(process.execPath, [file, String(port), ...extraArgs], {
    cwd: path.join(__dirname, '..'),
    env: { NODE_PATH: path.join(__dirname, '..', 'node_modules') },
    cpus: opts.cpus,
  });
  await waitForPort(port);
  return {
    name,
    port,
    proc,
    stop: async () => {
      await stopProcess(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The pids of a process and of all its descendants, from /proc/<pid>/task/<tid>/children, recursively. */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number, depth: number): void => {
    out.push(p);
    if (depth > 16) return; // bounded: a process tree is never this deep here
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return; // exited
    }
    for (const task of tasks) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${task}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(' ').filter(Boolean)) walk(Number(k), depth + 1);
    }
  };
  walk(pid, 0);
  return out;
}

export interface TreeCpu {
  /** Seconds of user and system CPU. */
  user: number;
  sys: number;
  /** Processes in the tree and threads among them, when it was read: what shape the peer really ran in. */
  processes: number;
  threads: number;
}

/**
 * CPU time a peer has used so far, in seconds (user, system): the process and every descendant (an nginx
 * master's workers; Portico's supervisor, control process and workers), from /proc. Each process counts
 * its own time (all its threads: /proc/<pid>/stat is per process) plus that of children it has reaped
 * (cutime, cstime), so a worker that died and was replaced between two readings is not lost. Undefined
 * where /proc is not there.
 */
export function cpuSeconds(pid: number | undefined): TreeCpu | undefined {
  if (pid === undefined) return undefined;
  const ticks = 100; // USER_HZ on Linux
  let user = 0;
  let sys = 0;
  let processes = 0;
  let threads = 0;
  try {
    readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // After "pid (comm) ": state=0 … utime=11 stime=12 cutime=13 cstime=14 … num_threads=17
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      user += Number(f[11]) + Number(f[13]);
      sys += Number(f[12]) + Number(f[14]);
      threads += Number(f[17]);
      processes++;
    } catch {
      // exited between the walk and the read
    }
  }
  return { user: user / ticks, sys: sys / ticks, processes, threads };
}

/**
 * CPU seconds of the children this process has waited for (cutime + cstime of /proc/self/stat): read
 * before and after a load generator run as a child, the difference is what the load generator used.
 */
export function reapedChildrenCpuSeconds(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return undefined;
  }
}

const execFileP = promisify(execFile);
const ROOT = path.join(__dirname, '..');
const PORTICO_BIN = path.join(ROOT, 'bin', 'portico');

/**
 * Whether this build takes the top-level `workers` key (issue 15: `workers: auto | <integer>`), asked the
 * way an operator would: `portico validate` on a config that has it. `supported: false` with the reason
 * when the key is refused; any other validation failure is the bench's own bug and throws.
 */
export async function porticoWorkersKey(): Promise<{ supported: boolean; detail: string }> {
  const dir = await tmpdir('workers-probe');
  try {
    const file = path.join(dir, 'portico.yaml');
    await writeFile(file, 'data: ./data\nworkers: auto\napi: { listen: 127.0.0.1:0 }\n');
    try {
      const { stdout } = await execFileP(process.execPath, [PORTICO_BIN, 'validate', file], {
        cwd: dir,
        env: { ...process.env, PORTICO_FROM_SOURCE: '0' },
      });
      return { supported: true, detail: stdout.trim() };
    } catch (err) {
      const msg = String((err as { stderr?: string }).stderr ?? err).trim();
      if (/workers/.test(msg)) return { supported: false, detail: msg };
      throw new Error(`portico validate failed on the workers probe, not for the key: ${msg}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `portico up` refused its config (the `workers` key on a build without it, for instance). */
export class PorticoStartError extends Error {}

/**
 * Portico as an operator runs it: `portico up` from the compiled dist/ (tsx's module getters would tax the
 * hot path; the bench builds dist/ first), on a config file of `config` (a YAML body; `data: ./data` is
 * added), with its log going to a file, as an operator's would (not to a pipe this process must read).
 * `workers` adds the top-level key (only pass it when the build takes it: porticoWorkersKey). Ready when a
 * TCP connect to `readyPort` succeeds.
 */
export async function startPorticoUp(opts: {
  name: string;
  config: string;
  readyPort: number;
  workers?: 'auto' | number | undefined;
  env?: Record<string, string | undefined>;
  nodeArgs?: string[];
  cpus?: string | undefined;
}): Promise<Peer> {
  const dir = await tmpdir(opts.name);
  const workers = opts.workers === undefined ? '' : `workers: ${opts.workers}\n`;
  await writeFile(path.join(dir, 'portico.yaml'), `data: ./data\n${workers}${opts.config}`);
  const log = openSync(path.join(dir, 'portico.log'), 'w');
  const env: Record<string, string> = { ...(process.env as Record<string, string>), PORTICO_FROM_SOURCE: '0' };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const [cmd, args] = pinned(opts.cpus, process.execPath, [
    ...(opts.nodeArgs ?? []),
    PORTICO_BIN,
    'up',
    '--config',
    path.join(dir, 'portico.yaml'),
  ]);
  const proc = spawn(cmd, args, { cwd: dir, env, stdio: ['ignore', log, 'pipe'] });
  closeSync(log);
  let err = '';
  proc.stderr?.on('data', (d) => {
    err = (err + String(d)).slice(-4000);
    process.stderr.write(d);
  });
  const exited = new Promise<never>((_, reject) =>
    proc.once('exit', (code, signal) => reject(new PorticoStartError(`portico up exited (${code ?? signal}): ${err.trim()}`))),
  );
  exited.catch(() => undefined);
  try {
    await Promise.race([waitForPort(opts.readyPort, '127.0.0.1', 30_000), exited]);
  } catch (e) {
    await stopProcess(proc);
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    name: opts.name,
    port: opts.readyPort,
    proc,
    stop: async () => {
      await stopProcess(proc, 15_000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
