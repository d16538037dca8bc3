/**
 * `portico-cni`: a CNI 1.1 IPAM plugin. It holds no state: it checks the CNI_* environment and the
 * config on stdin, answers VERSION itself, and forwards ADD/DEL/CHECK/GC/STATUS to the Portico daemon
 * over a unix socket (`ipam.socket` in the config, default /run/portico/ipam.sock). Result or error JSON
 * goes to stdout, logs to stderr. Who the container is for (service, task, framework, ports: see
 * ../owner.ts) travels in `CNI_ARGS` and the config's `args`/`runtimeConfig`, which are forwarded as
 * they are: the daemon reads them, the plugin stays small.
 *
 * Start-up and per-call cost matter (a runtime runs one process per container interface), so this file
 * loads nothing but node:fs (already loaded by node itself) and the protocol constants, and talks to the
 * daemon through libuv's pipe handle directly (`process.binding('pipe_wrap')`, what node:net is built
 * on): node:net would load and first-run the whole streams stack (~25 modules) for one line each way,
 * about 3 ms per process on the benchmark machine. Where that binding is missing or differs (another
 * node major) the plugin falls back to node:net; `PORTICO_CNI_CLIENT=net` forces it.
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import {
  CniCode, DEFAULT_SOCKET, SUPPORTED_VERSIONS, type CniError, type Command, type IpamReply, type IpamRequest,
} from './protocol.js';

const COMMANDS = new Set(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION']);
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;
const REQUEST_TIMEOUT_MS = Number(process.env.PORTICO_CNI_TIMEOUT_MS ?? 30_000);

class PluginError extends Error {
  constructor(readonly code: number, msg: string, readonly details?: string) {
    super(msg);
  }
}

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

function checkEnv(cmd: string, env: NodeJS.ProcessEnv): void {
  const need: string[] = [];
  if (cmd === 'ADD' || cmd === 'CHECK') need.push('CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME');
  else if (cmd === 'DEL') need.push('CNI_CONTAINERID', 'CNI_IFNAME');
  else if (cmd === 'GC') need.push('CNI_PATH');
  const missing = need.filter((n) => !env[n]);
  if (missing.length > 0) throw new PluginError(CniCode.INVALID_ENV, `missing environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, missing.join(','));
  const id = env.CNI_CONTAINERID;
  if (id !== undefined && id !== '' && !CONTAINER_ID_RE.test(id)) {
    throw new PluginError(CniCode.INVALID_ENV, 'invalid CNI_CONTAINERID: must match [A-Za-z0-9][A-Za-z0-9_.-]*', 'CNI_CONTAINERID');
  }
  const ifName = env.CNI_IFNAME;
  if (ifName !== undefined && ifName !== '' && (ifName.length > 15 || ifName === '.' || ifName === '..' || /[\/:\s]/.test(ifName))) {
    throw new PluginError(CniCode.INVALID_ENV, 'invalid CNI_IFNAME: at most 15 characters, no "/", ":" or spaces', 'CNI_IFNAME');
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

const timeoutError = (socketPath: string) => errno('ETIMEDOUT', `no answer from the Portico daemon at ${socketPath} within ${REQUEST_TIMEOUT_MS} ms`);

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
    const binding = (process as unknown as { binding?: (name: string) => Record<string, any> }).binding;
    if (typeof binding !== 'function') return undefined;
    const pw = binding('pipe_wrap');
    const sw = binding('stream_wrap');
    const ok = typeof pw.Pipe === 'function' && typeof pw.PipeConnectWrap === 'function' && typeof pw.constants?.SOCKET === 'number'
      && typeof sw.WriteWrap === 'function' && sw.streamBaseState instanceof Int32Array
      && typeof sw.kReadBytesOrError === 'number' && typeof sw.kArrayBufferOffset === 'number'
      && typeof pw.Pipe.prototype.readStart === 'function' && typeof pw.Pipe.prototype.writeUtf8String === 'function';
    if (!ok) return undefined;
    return {
      Pipe: pw.Pipe, PipeConnectWrap: pw.PipeConnectWrap, socketType: pw.constants.SOCKET, WriteWrap: sw.WriteWrap,
      state: sw.streamBaseState, kReadBytes: sw.kReadBytesOrError, kOffset: sw.kArrayBufferOffset,
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

async function ask(env: NodeJS.ProcessEnv, socketPath: string, req: IpamRequest): Promise<IpamReply> {
  const line = `${JSON.stringify(req)}\n`;
  const raw = rawBindings(env);
  return parseReply(raw ? await askRaw(raw, socketPath, line) : await askNet(socketPath, line), socketPath);
}

async function run(env: NodeJS.ProcessEnv): Promise<{ out?: unknown }> {
  const cmd = env.CNI_COMMAND ?? '';
  if (!COMMANDS.has(cmd)) {
    throw new PluginError(CniCode.INVALID_ENV, cmd ? `unknown CNI_COMMAND ${JSON.stringify(cmd)}` : 'missing environment variable CNI_COMMAND', 'CNI_COMMAND');
  }
  const text = readStdin();
  state.read = process.hrtime.bigint();
  let config: Record<string, unknown>;
  try {
    const parsed: unknown = text.trim() === '' && cmd === 'VERSION' ? {} : JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    config = parsed as Record<string, unknown>;
  } catch (e) {
    throw new PluginError(CniCode.DECODE_FAILURE, 'cannot decode the network configuration on stdin', (e as Error).message);
  }
  const version = typeof config.cniVersion === 'string' ? config.cniVersion : undefined;
  state.version = version;
  if (cmd === 'VERSION') return { out: { cniVersion: version ?? '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] } };
  if (version !== undefined && !(SUPPORTED_VERSIONS as readonly string[]).includes(version)) {
    throw new PluginError(CniCode.INCOMPATIBLE_VERSION, `incompatible CNI version ${version}`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  checkEnv(cmd, env);
  if (typeof config.name !== 'string' || config.name === '') throw new PluginError(CniCode.INVALID_CONFIG, 'network configuration has no "name"', 'name');
  const ipam = config.ipam;
  if (typeof ipam !== 'object' || ipam === null || Array.isArray(ipam)) throw new PluginError(CniCode.INVALID_CONFIG, 'network configuration has no "ipam" object', 'ipam');
  const sockOpt = (ipam as Record<string, unknown>).socket;
  if (sockOpt !== undefined && (typeof sockOpt !== 'string' || sockOpt === '')) throw new PluginError(CniCode.INVALID_CONFIG, '"ipam.socket" must be a non-empty path', 'ipam.socket');
  const socketPath = (sockOpt as string | undefined) ?? env.PORTICO_IPAM_SOCKET ?? DEFAULT_SOCKET;

  const req: IpamRequest = { command: cmd as Command, config };
  if (env.CNI_CONTAINERID) req.containerId = env.CNI_CONTAINERID;
  if (env.CNI_NETNS) req.netns = env.CNI_NETNS;
  if (env.CNI_IFNAME) req.ifName = env.CNI_IFNAME;
  if (env.CNI_ARGS) req.args = env.CNI_ARGS;

  let reply: IpamReply;
  try {
    reply = await ask(env, socketPath, req);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const code = cmd === 'STATUS' ? CniCode.NOT_AVAILABLE : CniCode.TRY_AGAIN_LATER;
    // DEL must succeed when there is nothing to release; with no daemon we cannot know, so it is an error
    // the runtime retries (code 11), never a silent success that would leak the lease.
    throw new PluginError(code, `the Portico IPAM daemon is unavailable at ${socketPath}`, `${err.code ?? ''} ${err.message}`.trim());
  }
  if (!reply.ok) throw new PluginError(reply.error.code, reply.error.msg, reply.error.details);
  return reply.result === undefined ? {} : { out: reply.result };
}

const state: { version: string | undefined; read: bigint } = { version: undefined, read: 0n };

/**
 * Run one command. With PORTICO_CNI_TIMING=1, the time from the config read off stdin to the result
 * written (checks, the daemon's answer, output) goes to stderr as `portico-cni: timing <command> <ms>`.
 */
export function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return run(env).then(
    ({ out }) => {
      if (out !== undefined) writeAll(1, `${JSON.stringify(out)}\n`);
      if (env.PORTICO_CNI_TIMING === '1') writeAll(2, `portico-cni: timing ${env.CNI_COMMAND} ${(Number(process.hrtime.bigint() - state.read) / 1e6).toFixed(3)}\n`);
      return 0;
    },
    (e: unknown) => {
      const err: CniError = e instanceof PluginError
        ? { code: e.code, msg: e.message, ...(e.details !== undefined ? { details: e.details } : {}) }
        : { code: CniCode.INTERNAL, msg: 'internal error in portico-cni', details: String((e as Error)?.stack ?? e) };
      const body = { cniVersion: state.version ?? '1.1.0', ...err };
      writeAll(2, `portico-cni: ${env.CNI_COMMAND ?? '?'} ${env.CNI_CONTAINERID ?? ''} ${env.CNI_IFNAME ?? ''}: ${err.msg}${err.details ? ` (${err.details})` : ''}\n`);
      writeAll(1, `${JSON.stringify(body)}\n`);
      return 1;
    },
  );
}
