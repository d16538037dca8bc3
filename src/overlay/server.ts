/**
 * The daemon's end of the plugin protocol (./cni/protocol.ts): a unix socket (default
 * /run/portico/ipam.sock, mode 0660), one JSON request line in, one reply out: a JSON line to the Node
 * plugin, the framed stdout/stderr/exit code to the native relay. The socket is the only way plugin
 * processes reach the store, which the daemon alone has open.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../telemetry/log.js';
import { fromReply, internal, plan, render, type CniEnv, type Outcome } from './cni/plan.js';
import {
  CniCode,
  MAX_REQUEST_BYTES,
  RELAY_REPLY_MAGIC,
  RELAY_VERSION,
  type IpamReply,
  type IpamRequest,
  type RelayRequest,
} from './cni/protocol.js';
import { CniFailure, type Ipam } from './ipam.js';

export interface IpamServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

/** Remove a socket file left by a dead daemon; refuse to steal one a live daemon answers on. */
async function clearStale(socketPath: string): Promise<void> {
  if (!fs.existsSync(socketPath)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.createConnection(socketPath);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another process already serves IPAM on ${socketPath}`);
  fs.unlinkSync(socketPath);
}

/** sun_path holds 108 bytes with the terminating NUL; libuv cuts a longer path short and binds that instead. */
const MAX_SOCKET_PATH_BYTES = 107;

export async function startIpamServer(socketPath: string, ipam: Ipam, log: Logger): Promise<IpamServer> {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES)
    throw new Error(`the socket path is ${bytes} bytes long; a Unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}`);
  fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  await clearStale(socketPath);
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    const chunks: Buffer[] = [];
    let size = 0;
    let handled = false;
    const handle = () => {
      if (handled) return;
      handled = true;
      const text = Buffer.concat(chunks).toString('utf8');
      answer(text, ipam, log).then(
        (reply) => {
          if (!sock.destroyed) sock.end(reply);
        },
        (e: unknown) => {
          log.error({ err: e }, 'cni request failed');
          sock.destroy();
        },
      );
    };
    sock.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REQUEST_BYTES) {
        sock.destroy();
        return;
      }
      chunks.push(c);
      if (c.includes(10)) handle();
    });
    sock.on('end', handle);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  fs.chmodSync(socketPath, 0o660);
  log.info({ socket: socketPath }, 'overlay IPAM serving CNI plugins');
  return {
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        try {
          fs.unlinkSync(socketPath);
        } catch {
          // already gone
        }
      }),
  };
}

/** One request's text → the bytes to answer with (an IpamReply line, or a framed relay reply). */
export async function answer(text: string, ipam: Ipam, log: Logger): Promise<string | Buffer> {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    return replyLine(undecodable(e));
  }
  const relay = relayRequest(msg);
  if (relay) return serveRelay(relay, ipam, log);
  return replyLine(await serveRequest(msg, ipam, log));
}

const replyLine = (reply: IpamReply) => `${JSON.stringify(reply)}\n`;

const undecodable = (e: unknown): IpamReply => ({
  ok: false,
  error: { code: CniCode.DECODE_FAILURE, msg: 'undecodable request from the plugin', details: (e as Error).message },
});

/** A well-formed relay request, or undefined (which then is answered as an IpamRequest would be). */
function relayRequest(msg: unknown): RelayRequest | undefined {
  if (typeof msg !== 'object' || msg === null || (msg as RelayRequest).relay !== RELAY_VERSION) return undefined;
  const { env, stdin } = msg as RelayRequest;
  if (typeof env !== 'object' || env === null || Array.isArray(env) || typeof stdin !== 'string') return undefined;
  if (!Object.values(env).every((v) => typeof v === 'string')) return undefined;
  return msg as RelayRequest;
}

/**
 * The native relay's raw call, decided by the Node plugin's own code (plan.ts) and rendered as the Node
 * plugin would print it. The request takes the same JSON round trip the Node plugin's does.
 */
export async function serveRelay(relay: RelayRequest, ipam: Ipam, log: Logger): Promise<Buffer> {
  // Only what the plugin reads (no prototype: a key like "__proto__" stays a plain property).
  const env: CniEnv = Object.assign(Object.create(null) as CniEnv, relay.env);
  let outcome: Outcome;
  try {
    const p = plan(env, relay.stdin);
    // The planned request takes the same JSON round trip the Node plugin's does (its line, parsed).
    outcome = p.kind === 'done' ? p.outcome : fromReply(p, await serveRequest(JSON.parse(p.line) as unknown, ipam, log));
  } catch (e) {
    outcome = internal(e);
  }
  const r = render(env, outcome);
  const out = Buffer.from(r.stdout, 'utf8');
  const err = Buffer.from(r.stderr, 'utf8');
  return Buffer.concat([Buffer.from(`${RELAY_REPLY_MAGIC} ${r.exit} ${out.length} ${err.length}\n`, 'latin1'), out, err]);
}

/** An IpamRequest (from the Node plugin, or planned from a relay request), executed. */
export async function serve(text: string, ipam: Ipam, log: Logger): Promise<IpamReply> {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    return undecodable(e);
  }
  return serveRequest(msg, ipam, log);
}

async function serveRequest(msg: unknown, ipam: Ipam, log: Logger): Promise<IpamReply> {
  const req = msg as IpamRequest;
  if (typeof req !== 'object' || req === null || typeof req.config !== 'object' || req.config === null)
    return undecodable(new Error('no config'));
  const cfg = req.config;
  if (typeof cfg.name !== 'string' || cfg.name === '')
    return { ok: false, error: { code: CniCode.INVALID_CONFIG, msg: 'network configuration has no "name"' } };
  const started = process.hrtime.bigint();
  try {
    let result: unknown;
    switch (req.command) {
      case 'ADD':
        result = await ipam.add(cfg, need(req.containerId, 'CNI_CONTAINERID'), need(req.ifName, 'CNI_IFNAME'), req.args);
        break;
      case 'DEL':
        await ipam.del(cfg, need(req.containerId, 'CNI_CONTAINERID'), need(req.ifName, 'CNI_IFNAME'));
        break;
      case 'CHECK':
        await ipam.check(cfg, need(req.containerId, 'CNI_CONTAINERID'), need(req.ifName, 'CNI_IFNAME'));
        break;
      case 'GC':
        await ipam.gc(cfg);
        break;
      case 'STATUS':
        await ipam.status(cfg);
        break;
      default:
        return { ok: false, error: { code: CniCode.INVALID_ENV, msg: `unknown command ${JSON.stringify(req.command)}` } };
    }
    log.debug(
      { cmd: req.command, net: cfg.name, cid: req.containerId, ifName: req.ifName, us: Number(process.hrtime.bigint() - started) / 1000 },
      'cni',
    );
    return result === undefined ? { ok: true } : { ok: true, result };
  } catch (e) {
    if (e instanceof CniFailure) {
      log.info({ cmd: req.command, net: cfg.name, cid: req.containerId, code: e.code, msg: e.message }, 'cni request refused');
      return { ok: false, error: e.toJSON() };
    }
    log.error({ err: e, cmd: req.command, net: cfg.name, cid: req.containerId }, 'cni request failed');
    // The store is unreachable or closing: the runtime should retry.
    return {
      ok: false,
      error: {
        code: CniCode.TRY_AGAIN_LATER,
        msg: 'the Portico daemon could not complete the request',
        details: String((e as Error)?.message ?? e),
      },
    };
  }
}

function need(v: string | undefined, name: string): string {
  if (!v) throw new CniFailure(CniCode.INVALID_ENV, `missing ${name}`, name);
  return v;
}
