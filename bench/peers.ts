/**
 * Starting the peers we measure against (HAProxy, nginx, http-proxy, a Node backend) as real
 * processes on loopback ports, and stopping them. Each peer is configured as the bench needs it:
 * one worker / one thread, keep-alive to the backend, logs off.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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

export function startProcess(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): ChildProcess {
  const proc = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'ignore', 'pipe'] });
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

/** nginx answering `return 200` (the shared backend), or proxying to one, with one worker. */
export async function startNginx(name: string, nginxBin: string, server: string): Promise<Peer> {
  const dir = await tmpdir(name);
  const port = await freePort();
  const conf = `
worker_processes 1;
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
  const proc = startProcess(nginxBin, ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
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

export async function startHaproxy(haproxyBin: string, frontend: (port: number) => string): Promise<Peer> {
  const dir = await tmpdir('haproxy');
  const port = await freePort();
  const conf = `
global
  nbthread 1
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
  const proc = startProcess(haproxyBin, ['-f', path.join(dir, 'haproxy.cfg'), '-db']);
  await waitForPort(port);
  return {
    name: 'haproxy',
    port,
    proc,
    stop: async () => {
      await stopProcess(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A Node script run as its own process (http-proxy peer, Node backend). The script prints nothing. */
export async function startNodeScript(name: string, source: string, port: number, extraArgs: string[] = []): Promise<Peer> {
  const dir = await tmpdir(name);
  const file = path.join(dir, `${name}.js`);
  await writeFile(file, source);
  const proc = startProcess(process.execPath, [file, String(port), ...extraArgs], {
    cwd: path.join(__dirname, '..'),
    env: { NODE_PATH: path.join(__dirname, '..', 'node_modules') },
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

/**
 * CPU time a peer has used so far, in seconds (user, system): the process and its children (an nginx
 * master's workers), from /proc. Undefined where /proc is not there.
 */
export function cpuSeconds(pid: number | undefined): { user: number; sys: number } | undefined {
  if (pid === undefined) return undefined;
  const ticks = 100; // USER_HZ on Linux
  const one = (p: number): [number, number] => {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return [Number(f[11]), Number(f[12])];
  };
  try {
    let [user, sys] = one(pid);
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const k of kids.split(' ').filter(Boolean)) {
        try {
          const [u, s] = one(Number(k));
          user += u;
          sys += s;
        } catch {
          // exited
        }
      }
    }
    return { user: user / ticks, sys: sys / ticks };
  } catch {
    return undefined;
  }
}
