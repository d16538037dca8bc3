/**
 * `portico-cni`: a CNI 1.1 IPAM plugin. It holds no state: it checks the CNI_* environment and the
 * config on stdin, answers VERSION itself, and forwards ADD/DEL/CHECK/GC/STATUS to the Portico daemon
 * over a unix socket (`ipam.socket` in the config, default /run/portico/ipam.sock). Result or error JSON
 * goes to stdout, logs to stderr. Who the container is for (service, task, framework, ports: see
 * ../owner.ts) travels in `CNI_ARGS` and the config's `args`/`runtimeConfig`, which are forwarded as
 * they are: the daemon reads them, the plugin stays small. Every check, message and code is in ./plan.ts,
 * which the daemon also runs for the native relay (native/portico-cni.c, what operators install as
 * `portico-cni` when a C compiler was there at build time): the relay sends the raw call and prints the
 * daemon's rendering of it, and runs this plugin whenever it cannot (no daemon, an older one, ...).
 *
 * Start-up and per-call cost matter (a runtime runs one process per container interface), so this file
 * loads nothing but node:fs (already loaded by node itself), plan.ts and the protocol constants, and talks to the
 * daemon through libuv's pipe handle directly (`process.binding('pipe_wrap')`, what node:net is built
 * on): node:net would load and first-run the whole streams stack (~25 modules) for one line each way,
 * about 3 ms per process on the benchmark machine. Where that binding is missing or differs (another
 * node major) the plugin falls back to node:net; `PORTICO_CNI_CLIENT=net` forces it.
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import { commandError, fromReply, internal, plan, render, unavailable, type Outcome } from './plan.js';
import type { IpamReply } from './protocol.js';

const REQUEST_TIMEOUT_MS = Number(process.env.PORTICO_CNI_TIMEOUT_MS ?? 30_000);

/**
 * Stdin, stdout and stderr through plain file descriptors: touching process.stdin/stdout builds stream
 * objects (a pipe is a net.Socket) that cost milliseconds per process, for one read and one write.
 */
function readStdin(): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') continue; // a non-blocking stdin: spin until data (rare: runtimes give a pipe)
      if (code === 'EOF') break;
      throw e;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function writeAll(fd: number, text: string): void {
  const b = Buffer.from(text, 'utf8');
  for (let off = 0; off < b.length;) {
    try {
      off += fs.writeSync(fd, b, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}

type Errno = Error & { code?: string };

function errno(code: string, msg: string): Errno {
  return Object.assign(new Error(msg), { code });
}

/** The reply line (or everything received before the daemon closed), parsed. */
function parseReply(text: string, socketPath: string): IpamReply {
  try {
    return JSON.parse(text.trim()) as IpamReply;
  } catch {
    throw errno('EPROTO', `the Portico daemon at ${socketPath} closed the connection without a valid answer`);
  }
}

const timeoutError = (socketPath: string) =>
  errno('ETIMEDOUT', `no answer from the Portico daemon at ${socketPath} within ${REQUEST_TIMEOUT_MS} ms`);

/** libuv's pipe and stream handles, as node:net uses them (node 20). */
interface PipeHandle {
  connect(req: object, path: string): number | undefined;
  readStart(): number;
  writeUtf8String(req: object, s: string): number;
  close(cb?: () => void): void;
  onread: (ab: ArrayBuffer | undefined) => void;
}
interface RawBindings {
  Pipe: new (type: number) => PipeHandle;
  PipeConnectWrap: new () => { oncomplete: (status: number) => void };
  socketType: number;
  WriteWrap: new () => { handle: PipeHandle; oncomplete: (status: number) => void; async: boolean };
  state: Int32Array;
  kReadBytes: number;
  kOffset: number;
}

function rawBindings(env: NodeJS.ProcessEnv): RawBindings | undefined {
  if (env.PORTICO_CNI_CLIENT === 'net') return undefined;
  try {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- internal bindings, checked field by field below
    const binding = (process as unknown as { binding?: (name: string) => Record<string, any> }).binding;
    if (typeof binding !== 'function') return undefined;
    const pw = binding('pipe_wrap');
    const sw = binding('stream_wrap');
    const ok =
      typeof pw.Pipe === 'function' &&
      typeof pw.PipeConnectWrap === 'function' &&
      typeof pw.constants?.SOCKET === 'number' &&
      typeof sw.WriteWrap === 'function' &&
      sw.streamBaseState instanceof Int32Array &&
      typeof sw.kReadBytesOrError === 'number' &&
      typeof sw.kArrayBufferOffset === 'number' &&
      typeof pw.Pipe.prototype.readStart === 'function' &&
      typeof pw.Pipe.prototype.writeUtf8String === 'function';
    if (!ok) return undefined;
    return {
      Pipe: pw.Pipe,
      PipeConnectWrap: pw.PipeConnectWrap,
      socketType: pw.constants.SOCKET,
      WriteWrap: sw.WriteWrap,
      state: sw.streamBaseState,
      kReadBytes: sw.kReadBytesOrError,
      kOffset: sw.kArrayBufferOffset,
    };
  } catch {
    return undefined;
  }
}

function uvError(status: number, what: string, socketPath: string): Errno {
  let code = `E${-status}`;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    code = (require('node:util') as typeof import('node:util')).getSystemErrorName(status);
  } catch {
    // keep the number
  }
  return errno(code, `${what} ${socketPath}: ${code}`);
}

/**
 * One request line out, one reply line back, on a bare libuv pipe handle. The answer is taken as soon as
 * its newline arrives (waiting for the daemon's FIN and the close costs another loop turn or two).
 */
function askRaw(b: RawBindings, socketPath: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const handle = new b.Pipe(b.socketType);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      handle.close(); // (onread stays: the binding asserts it is a function)
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    const timer = setTimeout(() => finish(timeoutError(socketPath)), REQUEST_TIMEOUT_MS);
    const req = new b.PipeConnectWrap();
    req.oncomplete = (status: number) => {
      if (status < 0) return finish(uvError(status, 'connect', socketPath));
      handle.onread = (ab) => {
        const n = b.state[b.kReadBytes]!;
        if (n > 0 && ab) {
          const c = Buffer.from(Buffer.from(ab, b.state[b.kOffset]!, n));
          chunks.push(c);
          if (c.includes(10)) finish(undefined);
        } else if (n < 0) {
          finish(undefined); // EOF (or a reset): what arrived is the answer, or not one
        }
      };
      const rs = handle.readStart();
      if (rs < 0) return finish(uvError(rs, 'read from', socketPath));
      const w = new b.WriteWrap();
      w.handle = handle;
      w.async = false;
      w.oncomplete = (st: number) => {
        if (st < 0) finish(uvError(st, 'write to', socketPath));
      };
      const ws = handle.writeUtf8String(w, line);
      if (ws < 0) finish(uvError(ws, 'write to', socketPath));
    };
    const cs = handle.connect(req, socketPath);
    if (typeof cs === 'number' && cs < 0) finish(uvError(cs, 'connect', socketPath));
  });
}

/** The same exchange through node:net (where the raw handles are not available). */
function askNet(socketPath: string, line: string): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const net = require('node:net') as typeof import('node:net');
  return new Promise((resolve, reject) => {
    const sock: Socket = net.createConnection(socketPath);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (err: Error | undefined) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks).toString('utf8'));
    };
    sock.setTimeout(REQUEST_TIMEOUT_MS, () => finish(timeoutError(socketPath)));
    sock.on('connect', () => sock.write(line));
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (c.includes(10)) finish(undefined);
    });
    sock.on('error', finish);
    sock.on('close', () => finish(undefined));
  });
}

async function ask(env: NodeJS.ProcessEnv, socketPath: string, line: string): Promise<IpamReply> {
  const raw = rawBindings(env);
  return parseReply(raw ? await askRaw(raw, socketPath, line) : await askNet(socketPath, line), socketPath);
}

async function run(env: NodeJS.ProcessEnv): Promise<Outcome> {
  const early = commandError(env);
  if (early) return early;
  const text = readStdin();
  state.read = process.hrtime.bigint();
  const p = plan(env, text);
  if (p.kind === 'done') return p.outcome;
  state.version = p.version;
  let reply: IpamReply;
  try {
    reply = await ask(env, p.socketPath, p.line);
  } catch (e) {
    return unavailable(p, e as NodeJS.ErrnoException);
  }
  return fromReply(p, reply);
}

const state: { version: string | undefined; read: bigint } = { version: undefined, read: 0n };

/**
 * Run one command. With PORTICO_CNI_TIMING=1, the time from the config read off stdin to the result
 * written (checks, the daemon's answer, output) goes to stderr as `portico-cni: timing <command> <ms>`.
 */
export function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return run(env)
    .catch((e: unknown) => internal(e, state.version))
    .then((outcome) => {
      const r = render(env, outcome);
      if (r.stderr) writeAll(2, r.stderr);
      if (r.stdout) writeAll(1, r.stdout);
      if (r.exit === 0 && env.PORTICO_CNI_TIMING === '1')
        writeAll(2, `portico-cni: timing ${env.CNI_COMMAND} ${(Number(process.hrtime.bigint() - state.read) / 1e6).toFixed(3)}\n`);
      return r.exit;
    });
}
