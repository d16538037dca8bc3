/**
 * UDP VIPs: a flow table per listener. A datagram from a client `address:port` not seen before picks an
 * endpoint (Maglev on the flow's hash, like TCP) and gets its own upstream socket, connected to that
 * endpoint — so replies need no lookup (the kernel delivers only that endpoint's datagrams to it) and each
 * client keeps its endpoint for the life of the flow. Replies go back from the VIP's socket to the client.
 *
 * Bounded: at most `udpMaxFlows` flows per VIP (a new client beyond it is dropped, counted and logged
 * until flows expire), at most `MAX_QUEUED` datagrams held per flow while its socket connects, datagrams
 * up to 64 KiB (the kernel's limit: 65,507 bytes of IPv4 payload). A flow with no datagram either way for
 * `udpIdleTimeoutMs` expires; a flow to an endpoint that is draining ends at the drain deadline.
 *
 * With `proxyProtocol: v2` on the VIP, every datagram to the endpoint starts with a PROXY v2 header
 * (UDP family), sent in the same syscall as the payload (no copy). v1 has no UDP form: not sent.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { fnv1a } from './maglev.js';
import type { Member } from './pool.js';
import { encodeV2, unmapAddress, type Address } from './proxy-protocol.js';
import type { Front, L4Host } from './types.js';

/** Datagrams held per flow while its upstream socket connects. */
const MAX_QUEUED = 64;

class UdpFlow {
  touched = false;
  lastActive: number;
  ready = false;
  queue: Buffer[] = [];
  closed = false;

  constructor(
    readonly key: string,
    readonly client: Address,
    readonly member: Member,
    readonly upstream: dgram.Socket,
    readonly front: Front,
    readonly header: Buffer | undefined,
    now: number,
  ) {
    this.lastActive = now;
  }
}

export class UdpListener {
  readonly flows = new Map<string, UdpFlow>();

  constructor(
    private readonly host: L4Host,
    readonly socket: dgram.Socket,
    /** The front this listener serves now (the compiled table changes under it). */
    private readonly front: () => Front | undefined,
    private readonly local: Address,
  ) {
    socket.on('message', this.onMessage);
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = this.flows.get(key);
    if (flow === undefined) {
      const created = this.open(key, rinfo);
      if (!created) return;
      flow = created;
    }
    const stats = flow.front.stats;
    stats.datagramsIn++;
    stats.bytesIn += msg.length;
    flow.member.backend.bytesIn += msg.length;
    flow.touched = true;
    if (!flow.ready) {
      if (flow.queue.length < MAX_QUEUED) flow.queue.push(msg);
      return;
    }
    this.forward(flow, msg);
  };

  private forward(flow: UdpFlow, msg: Buffer): void {
    try {
      if (flow.header) flow.upstream.send([flow.header, msg]);
      else flow.upstream.send(msg);
    } catch {
      // EMSGSIZE with the header on a maximal datagram, or a socket closing: the datagram is lost, as UDP may.
    }
  }

  private open(key: string, rinfo: dgram.RemoteInfo): UdpFlow | undefined {
    const front = this.front();
    if (!front || !front.pool) return undefined;
    const client: Address = { address: unmapAddress(rinfo.address), port: rinfo.port };
    if (this.flows.size >= this.host.opts.udpMaxFlows) {
      this.host.rejected(front, 'flow-table-full', { client, message: `${this.flows.size} flows open` });
      return undefined;
    }
    const sel = front.pool.selector;
    const hash = !sel.needsHash
      ? 0
      : this.host.opts.hashKey === 'source-ip'
        ? fnv1a(client.address)
        : fnv1a(`${client.address}|${client.port}|${this.local.address}|${this.local.port}|udp`);
    const m = sel.pick(hash, null);
    if (!m) {
      this.host.rejected(front, 'no-endpoint', { client });
      return undefined;
    }
    const b = m.backend;
    const upstream = dgram.createSocket({ type: net.isIPv6(b.address) ? 'udp6' : 'udp4' });
    const header = front.proxyProtocol === 'v2' ? encodeV2(client, this.local, 'udp') : undefined;
    const flow = new UdpFlow(key, client, m, upstream, front, header, this.host.now);
    this.flows.set(key, flow);
    front.stats.flows++;
    m.active++;
    b.active++;
    b.connections++;
    upstream.on('message', (reply) => {
      flow.touched = true;
      front.stats.datagramsOut++;
      front.stats.bytesOut += reply.length;
      b.bytesOut += reply.length;
      // (no callback: a send error is emitted on the VIP socket, which logs it; the flow expires on its own)
      try {
        this.socket.send(reply, client.port, client.address);
      } catch {
        this.close(flow); // the VIP socket is closed (the listener is going away)
      }
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      // ECONNREFUSED: the endpoint answered with ICMP port unreachable — a passive health signal.
      if (err.code === 'ECONNREFUSED') this.host.connectFailed(m, 'connect-failed', err);
      else this.host.rejected(front, 'upstream-error', { client, endpoint: b.key, err });
      this.close(flow);
    });
    upstream.connect(b.port, b.address, () => {
      if (flow.closed) return;
      flow.ready = true;
      this.host.connectSucceeded(m);
      const q = flow.queue;
      flow.queue = [];
      for (const d of q) this.forward(flow, d);
    });
    return flow;
  }

  close(flow: UdpFlow): void {
    if (flow.closed) return;
    flow.closed = true;
    if (this.flows.get(flow.key) === flow) this.flows.delete(flow.key);
    flow.front.stats.flows--;
    flow.member.active--;
    flow.member.backend.active--;
    try {
      flow.upstream.close();
    } catch {
      // already closed
    }
  }

  /** Expire idle flows and flows of drained endpoints. */
  tick(now: number): void {
    const idle = this.host.opts.udpIdleTimeoutMs;
    for (const f of this.flows.values()) {
      if (f.touched) {
        f.touched = false;
        f.lastActive = now;
      } else if (now - f.lastActive >= idle) {
        this.close(f);
        continue;
      }
      const d = f.member.drainDeadline;
      if (d !== 0 && now >= d) this.close(f);
    }
  }

  /** Close every flow and the VIP's socket. */
  shutdown(): void {
    for (const f of [...this.flows.values()]) this.close(f);
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}
