/**
 * After a 101: the client's and the upstream's streams joined by a raw two-way tunnel (tunnel.ts is all
 * of it; the exchange hands both streams over in Exchange.onUpstreamUpgrade).
 */
import type { ClientConn } from './client.js';
import { writable, type Stream, type StreamOwner } from '../net/stream.js';
import { CoarseTimer, type TimerWheel } from './timers.js';

/**
 * A raw two-way tunnel (after 101): backpressure both ways, half-close passed on, idle timeout. It holds
 * no reference to any table, so it survives every table swap. It takes both streams over; when the
 * client's closes, the client connection hears of it (the entrypoint tracks it for drains).
 */
export class Tunnel {
  private readonly timer: CoarseTimer<Tunnel>;
  readonly client: TunnelSide;
  readonly upstream: TunnelSide;

  constructor(
    private readonly conn: ClientConn,
    a: Stream,
    b: Stream,
    wheel: TimerWheel,
    idleMs: number,
  ) {
    this.timer = new CoarseTimer<Tunnel>(wheel, onTunnelIdle, this as Tunnel);
    this.timer.start(idleMs);
    this.client = new TunnelSide(this, a, b);
    this.upstream = new TunnelSide(this, b, a);
    a.owner = this.client;
    b.owner = this.upstream;
    a.resume();
    b.resume();
  }

  touch(): void {
    this.timer.refresh();
  }

  closed(side: TunnelSide): void {
    this.timer.clear();
    if (side === this.client) this.conn.tunnelClosed();
  }

  destroy(): void {
    this.client.from.destroy();
    this.upstream.from.destroy();
  }
}

/** One direction of a tunnel: what `from` reads goes to `to`. */
class TunnelSide implements StreamOwner {
  constructor(
    private readonly t: Tunnel,
    readonly from: Stream,
    readonly to: Stream,
  ) {}
  onStreamData(d: Buffer): void {
    this.t.touch();
    if (!this.to.write(writable(this.to, d, this.from.volatileReads))) this.from.pause();
  }
  onStreamEnd(): void {
    this.to.end();
  }
  /** `from` drained: the other direction, which writes into it, may read again. */
  onStreamDrain(): void {
    this.to.resume();
  }
  onStreamClose(): void {
    this.t.closed(this);
    this.to.destroy();
  }
  onStreamConnect(): void {}
}

function onTunnelIdle(t: Tunnel): void {
  t.destroy();
}
