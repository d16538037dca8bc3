/**
 * Test helpers for the DNS plane: a real plane on 127.0.0.1:0 fed by a real Aggregator, hand-made
 * queries (so every header bit and EDNS field is under the test's control), UDP and TCP clients, and
 * dns2's decoder as the independent reader of what we send.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import DNS from 'dns2';
import { Aggregator } from '../../src/aggregator/aggregator.js';
import type { DnsConfig } from '../../src/config/types.js';
import { createDnsPlane, type DnsOptions, type DnsPlane } from '../../src/dns/index.js';
import type { RoutingTable, Snapshot } from '../../src/model/types.js';
import { createRegistry, type Registry } from '../../src/telemetry/metrics.js';
import { withTimeout } from '../helpers/wait.js';

export const { Packet } = DNS;
export type Packet = DNS.Packet;
export type Resource = DNS.Packet.Resource;

interface Teardown {
  teardown(fn: () => unknown): void;
}

export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, AXFR: 252, ANY: 255 } as const;

export interface QuerySpec {
  name: string;
  type?: number;
  id?: number;
  rd?: boolean;
  cd?: boolean;
  opcode?: number;
  cls?: number;
  /** false: no OPT. Default: EDNS with 1232. */
  edns?: false | { udpSize?: number; version?: number; do?: boolean };
}

/** A query built byte by byte (not by the code under test, not by dns2). */
export function query(spec: QuerySpec): Buffer {
  const labels = spec.name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l.length > 0);
  const nameLen = labels.reduce((n, l) => n + 1 + Buffer.byteLength(l, 'latin1'), 1);
  const edns = spec.edns === undefined ? {} : spec.edns;
  const out = Buffer.alloc(12 + nameLen + 4 + (edns ? 11 : 0));
  out.writeUInt16BE(spec.id ?? 0x1234, 0);
  out[2] = ((spec.opcode ?? 0) << 3) | (spec.rd === false ? 0 : 1);
  out[3] = spec.cd ? 0x10 : 0;
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  let p = 12;
  for (const l of labels) {
    out[p++] = l.length;
    p += out.write(l, p, 'latin1');
  }
  out[p++] = 0;
  out.writeUInt16BE(spec.type ?? T.A, p);
  out.writeUInt16BE(spec.cls ?? 1, p + 2);
  p += 4;
  if (edns) {
    out[p] = 0;
    out.writeUInt16BE(41, p + 1);
    out.writeUInt16BE(edns.udpSize ?? 1232, p + 3);
    out[p + 5] = 0;
    out[p + 6] = edns.version ?? 0;
    out.writeUInt16BE(edns.do ? 0x8000 : 0, p + 7);
    out.writeUInt16BE(0, p + 9);
  }
  return out;
}

export function decode(buf: Buffer): Packet {
  return Packet.parse(buf);
}

/** Header fields straight from the bytes (dns2's decoder drops some). */
export function header(buf: Buffer) {
  return {
    id: buf.readUInt16BE(0),
    qr: (buf[2]! & 0x80) !== 0,
    opcode: (buf[2]! >> 3) & 0x0f,
    aa: (buf[2]! & 0x04) !== 0,
    tc: (buf[2]! & 0x02) !== 0,
    rd: (buf[2]! & 0x01) !== 0,
    ra: (buf[3]! & 0x80) !== 0,
    cd: (buf[3]! & 0x10) !== 0,
    rcode: buf[3]! & 0x0f,
    qd: buf.readUInt16BE(4),
    an: buf.readUInt16BE(6),
    ns: buf.readUInt16BE(8),
    ar: buf.readUInt16BE(10),
  };
}

/** The question name exactly as the answer spells it. */
export function questionName(buf: Buffer): string {
  const labels: string[] = [];
  let p = 12;
  while (buf[p] !== 0) {
    const l = buf[p]!;
    labels.push(buf.toString('latin1', p + 1, p + 1 + l));
    p += l + 1;
  }
  return labels.join('.');
}

/** A UDP client socket that collects every datagram it receives. */
export class UdpClient {
  readonly sock = dgram.createSocket('udp4');
  private readonly waiting = new Map<number, (b: Buffer) => void>();
  readonly received: Buffer[] = [];

  async open(): Promise<this> {
    await new Promise<void>((r) => this.sock.bind(0, '127.0.0.1', () => r()));
    this.sock.on('message', (m) => {
      this.received.push(m);
      if (m.length >= 2) {
        const id = m.readUInt16BE(0);
        const w = this.waiting.get(id);
        if (w) {
          this.waiting.delete(id);
          w(m);
        }
      }
    });
    return this;
  }

  send(port: number, buf: Buffer): void {
    this.sock.send(buf, port, '127.0.0.1');
  }

  /** Send and wait for the answer with the same id. */
  ask(port: number, buf: Buffer, timeoutMs = 2000): Promise<Buffer> {
    const id = buf.readUInt16BE(0);
    const p = new Promise<Buffer>((resolve) => this.waiting.set(id, resolve));
    this.send(port, buf);
    return withTimeout(p, timeoutMs, `udp answer to id ${id}`).finally(() => this.waiting.delete(id));
  }

  close(): void {
    this.sock.close();
  }
}

/** One query over UDP on a fresh socket. */
export async function udp(port: number, buf: Buffer, timeoutMs = 2000): Promise<Buffer> {
  const c = await new UdpClient().open();
  try {
    return await c.ask(port, buf, timeoutMs);
  } finally {
    c.close();
  }
}

/** A TCP connection: framed writes, framed reads in arrival order. */
export class TcpClient {
  readonly sock: net.Socket;
  private buf = Buffer.alloc(0);
  readonly messages: Buffer[] = [];
  private waiters: Array<() => void> = [];
  closed = false;

  /** `localAddress`: the source to connect from (any 127/8 address is on lo). */
  constructor(port: number, localAddress?: string) {
    this.sock = net.connect({ port, host: '127.0.0.1', ...(localAddress !== undefined && { localAddress }) });
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
        const len = this.buf.readUInt16BE(0);
        this.messages.push(this.buf.subarray(2, 2 + len));
        this.buf = this.buf.subarray(2 + len);
      }
      this.wake();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    this.sock.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  connected(): Promise<void> {
    return withTimeout(
      new Promise<void>((r) => (this.sock.readyState === 'open' ? r() : this.sock.once('connect', () => r()))),
      2000,
      'tcp connect',
    );
  }

  send(buf: Buffer): void {
    const framed = Buffer.alloc(2 + buf.length);
    framed.writeUInt16BE(buf.length, 0);
    buf.copy(framed, 2);
    this.sock.write(framed);
  }

  /** Wait until `n` messages have arrived in total. */
  async waitFor(n: number, timeoutMs = 2000): Promise<Buffer[]> {
    const check = async (): Promise<Buffer[]> => {
      while (this.messages.length < n) {
        if (this.closed) throw new Error(`connection closed after ${this.messages.length} of ${n} answers`);
        await new Promise<void>((r) => this.waiters.push(r));
      }
      return this.messages.slice(0, n);
    };
    return withTimeout(check(), timeoutMs, `${n} tcp answers`);
  }

  waitClosed(timeoutMs = 3000): Promise<void> {
    return withTimeout(new Promise<void>((r) => (this.closed ? r() : this.sock.once('close', () => r()))), timeoutMs, 'tcp close');
  }

  close(): void {
    this.sock.destroy();
  }
}

export async function tcp(port: number, buf: Buffer, timeoutMs = 2000): Promise<Buffer> {
  const c = new TcpClient(port);
  try {
    c.send(buf);
    return (await c.waitFor(1, timeoutMs))[0]!;
  } finally {
    c.close();
  }
}

export const baseConfig = (over: Partial<DnsConfig> = {}): DnsConfig => ({
  listen: '127.0.0.1:0',
  upstreams: [],
  allowRecursionFrom: ['127.0.0.0/8', '::1/128'],
  ttlMs: 5000,
  ...over,
});

export interface Started {
  plane: DnsPlane;
  port: number;
  agg: Aggregator;
  registry: Registry;
  /** Publish `snap` from `provider` and wait until the plane serves the resulting table. */
  publish(snap: Snapshot, priority?: number): Promise<RoutingTable>;
  /** Apply a table by hand (e.g. with VIP addresses set). */
  apply(table: RoutingTable): void;
}

/** A plane on an ephemeral port, fed by an aggregator; `snaps` are published before it starts. */
export async function startPlane(
  t: Teardown,
  snaps: Snapshot[],
  config: Partial<DnsConfig> = {},
  options: Partial<DnsOptions> = {},
): Promise<Started> {
  const registry = createRegistry({ defaultMetrics: false });
  const agg = new Aggregator({ debounceMs: 0, registry });
  const plane = createDnsPlane({ config: baseConfig(config), registry, options });
  const waitTable = (): Promise<RoutingTable> =>
    withTimeout(
      new Promise<RoutingTable>((resolve) => {
        const off = agg.subscribe((table) => {
          off();
          resolve(table);
        });
      }),
      2000,
      'a new table',
    );
  for (const s of snaps) {
    const next = waitTable();
    agg.update(s.provider, 0, s);
    await next;
  }
  await plane.start(agg.current());
  agg.subscribe((table) => plane.apply(table));
  t.teardown(async () => {
    await plane.stop(100);
    agg.close();
  });
  return {
    plane,
    port: plane.address().udp.port,
    agg,
    registry,
    publish: async (snap, priority = 0) => {
      const next = waitTable();
      agg.update(snap.provider, priority, snap);
      return next;
    },
    apply: (table) => plane.apply(table),
  };
}

/** mulberry32: a seeded PRNG, so a failing fuzz run can be reproduced. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

export function seedFromEnv(): number {
  const env = process.env.PORTICO_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

/** Answer records of a decoded packet, by type. */
export function answersOf(p: Packet, type?: number): Resource[] {
  return p.answers.filter((r) => type === undefined || r.type === type);
}
