/**
 * The daemon's end of the plugin protocol: a unix socket (default /run/portico/ipam.sock, mode 0660),
 * one JSON request line in, one JSON reply line out. The socket is the only way plugin processes reach
 * the store, which the daemon alone has open.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../telemetry/log.js';
import { CniCode, type IpamReply, type IpamRequest } from './cni/protocol.js';
import { CniFailure, type Ipam } from './ipam.js';

const MAX_REQUEST = 1 << 20;

export interface IpamServer {
  readonly socketPath: string;
  close(): Promise<void>;
}

/** Remove a socket file left by a dead daemon; refuse to steal one a live daemon answers on. */
async function clearStale(socketPath: string): Promise<void> {
  if (!fs.existsSync(socketPath)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.createConnection(socketPath);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another process already serves IPAM on ${socketPath}`);
  fs.unlinkSync(socketPath);
}

export async function startIpamServer(socketPath: string, ipam: Ipam, log: Logger): Promise<IpamServer> {
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
      serve(text, ipam, log).then((reply) => {
        if (!sock.destroyed) sock.end(`${JSON.stringify(reply)}\n`);
      });
    };
    sock.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REQUEST) {
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
    close: () => new Promise<void>((resolve) => {
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

export async function serve(text: string, ipam: Ipam, log: Logger): Promise<IpamReply> {
  let req: IpamRequest;
  try {
    req = JSON.parse(text) as IpamRequest;
    if (typeof req !== 'object' || req === null || typeof req.config !== 'object' || req.config === null) throw new Error('no config');
  } catch (e) {
    return { ok: false, error: { code: CniCode.DECODE_FAILURE, msg: 'undecodable request from the plugin', details: (e as Error).message } };
  }
  const cfg = req.config;
  if (typeof cfg.name !== 'string' || cfg.name === '') return { ok: false, error: { code: CniCode.INVALID_CONFIG, msg: 'network configuration has no "name"' } };
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
    log.debug({ cmd: req.command, net: cfg.name, cid: req.containerId, ifName: req.ifName, us: Number(process.hrtime.bigint() - started) / 1000 }, 'cni');
    return result === undefined ? { ok: true } : { ok: true, result };
  } catch (e) {
    if (e instanceof CniFailure) {
      log.info({ cmd: req.command, net: cfg.name, cid: req.containerId, code: e.code, msg: e.message }, 'cni request refused');
      return { ok: false, error: e.toJSON() };
    }
    log.error({ err: e, cmd: req.command, net: cfg.name, cid: req.containerId }, 'cni request failed');
    // The store is unreachable or closing: the runtime should retry.
    return { ok: false, error: { code: CniCode.TRY_AGAIN_LATER, msg: 'the Portico daemon could not complete the request', details: String((e as Error)?.message ?? e) } };
  }
}

function need(v: string | undefined, name: string): string {
  if (!v) throw new CniFailure(CniCode.INVALID_ENV, `missing ${name}`, name);
  return v;
}
