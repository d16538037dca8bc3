/**
 * `portico-cni`: a CNI 1.1 IPAM plugin. It holds no state: it checks the CNI_* environment and the
 * config on stdin, answers VERSION itself, and forwards ADD/DEL/CHECK/GC/STATUS to the Portico daemon
 * over a unix socket (`ipam.socket` in the config, default /run/portico/ipam.sock). Result or error JSON
 * goes to stdout, logs to stderr.
 *
 * Start-up cost matters (a runtime runs one process per container interface): this file imports only
 * node:fs, node:net and the protocol constants, nothing of the daemon.
 */
import fs from 'node:fs';
import net from 'node:net';
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

function ask(socketPath: string, req: IpamRequest): Promise<IpamReply> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const chunks: Buffer[] = [];
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      reject(e);
    };
    sock.setTimeout(REQUEST_TIMEOUT_MS, () => fail(Object.assign(new Error(`no answer from the Portico daemon at ${socketPath} within ${REQUEST_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })));
    // One request line out; the answer is one line back: take it as soon as its newline arrives (waiting
    // for the daemon's FIN and the socket's close costs another loop turn or two).
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    const finish = () => {
      if (settled) return;
      settled = true;
      sock.destroy();
      const text = Buffer.concat(chunks).toString('utf8').trim();
      try {
        resolve(JSON.parse(text) as IpamReply);
      } catch {
        reject(Object.assign(new Error(`the Portico daemon at ${socketPath} closed the connection without a valid answer`), { code: 'EPROTO' }));
      }
    };
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (c.includes(10)) finish();
    });
    sock.on('error', fail);
    sock.on('close', finish);
  });
}

async function run(env: NodeJS.ProcessEnv): Promise<{ out?: unknown }> {
  const cmd = env.CNI_COMMAND ?? '';
  if (!COMMANDS.has(cmd)) {
    throw new PluginError(CniCode.INVALID_ENV, cmd ? `unknown CNI_COMMAND ${JSON.stringify(cmd)}` : 'missing environment variable CNI_COMMAND', 'CNI_COMMAND');
  }
  const text = readStdin();
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
    reply = await ask(socketPath, req);
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

const state: { version: string | undefined } = { version: undefined };

/**
 * Run one command. With PORTICO_CNI_TIMING=1, the time spent after start-up (stdin read, checks, the
 * daemon's answer) goes to stderr as `portico-cni: timing <command> <ms>` (the benchmark reads it).
 */
export function main(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const started = performance.now();
  return run(env).then(
    ({ out }) => {
      if (out !== undefined) writeAll(1, `${JSON.stringify(out)}\n`);
      if (env.PORTICO_CNI_TIMING === '1') writeAll(2, `portico-cni: timing ${env.CNI_COMMAND} ${(performance.now() - started).toFixed(3)}\n`);
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
