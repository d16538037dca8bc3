/**
 * A scriptable upstream DNS server for forwarder tests (UDP and TCP on one port), built on dns2's
 * codec: it only ever decodes what our forwarder sends, and speed does not matter here.
 * `behave(name, type, transport)` says what to do with each query: answer (with records, an rcode,
 * TC, a delay or a hold until the test releases it, a wrong-id decoy first) or drop it.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { Recorder } from '../helpers/wait.js';
import { Packet, type Resource } from './helpers.js';

export interface Behaviour {
  drop?: boolean;
  rcode?: number;
  answers?: Array<Partial<Resource>>;
  authorities?: Array<Partial<Resource>>;
  /** Set TC on UDP (the TCP answer is complete). */
  truncateUdp?: boolean;
  delayMs?: number;
  /** Answer only once this resolves (the test decides when). */
  hold?: Promise<void>;
  /** Send a copy with a different id first (must be ignored). */
  decoy?: 'wrong-id' | 'wrong-question' | 'garbage';
  /** Leave our OPT out of the answer. */
  noOpt?: boolean;
}

export interface Seen {
  name: string;
  type: number;
  id: number;
  transport: 'udp' | 'tcp';
  port: number;
  edns: boolean;
}

export class FakeUpstream {
  udp = dgram.createSocket('udp4');
  readonly tcp: net.Server;
  readonly seen: Seen[] = [];
  /** The same queries, to wait on. */
  readonly arrived = new Recorder<Seen>();
  port = 0;
  behave: (name: string, type: number, transport: 'udp' | 'tcp') => Behaviour = () => ({ answers: [] });

  private readonly conns = new Set<net.Socket>();

  constructor() {
    this.tcp = net.createServer((sock) => {
      this.conns.add(sock);
      sock.on('close', () => this.conns.delete(sock));
      let buf = Buffer.alloc(0);
      sock.on('error', () => {});
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          void this.answer(msg, 'tcp', sock.remotePort ?? 0).then((out) => {
            for (const o of out) {
              const framed = Buffer.alloc(2 + o.length);
              framed.writeUInt16BE(o.length, 0);
              o.copy(framed, 2);
              sock.write(framed);
            }
          });
        }
      });
    });
  }

  /** TCP on an ephemeral port, then UDP on the same port (another one if that is taken for UDP). */
  async start(): Promise<this> {
    for (let attempt = 0; ; attempt++) {
      await new Promise<void>((resolve, reject) => {
        this.tcp.once('error', reject);
        this.tcp.listen(0, '127.0.0.1', () => {
          this.tcp.off('error', reject);
          resolve();
        });
      });
      this.port = (this.tcp.address() as net.AddressInfo).port;
      try {
        await new Promise<void>((resolve, reject) => {
          this.udp.once('error', reject);
          this.udp.bind(this.port, '127.0.0.1', () => {
            this.udp.off('error', reject);
            resolve();
          });
        });
        break;
      } catch (err) {
        this.udp.close();
        this.udp = dgram.createSocket('udp4');
        await new Promise<void>((r) => this.tcp.close(() => r()));
        if (attempt >= 32) throw err;
      }
    }
    this.udp.on('message', (msg, rinfo) => {
      void this.answer(msg, 'udp', rinfo.port).then((out) => {
        for (const o of out) this.udp.send(o, rinfo.port, rinfo.address);
      });
    });
    return this;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  count(name?: string): number {
    return this.seen.filter((s) => name === undefined || s.name.toLowerCase() === name.toLowerCase()).length;
  }

  private async answer(msg: Buffer, transport: 'udp' | 'tcp', port: number): Promise<Buffer[]> {
    const req = Packet.parse(msg);
    const q = req.questions[0];
    if (!q) return [];
    const seen: Seen = { name: q.name, type: q.type, id: req.header.id, transport, port, edns: req.additionals.some((r) => r.type === 41) };
    this.seen.push(seen);
    this.arrived.push(seen);
    const b = this.behave(q.name, q.type, transport);
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    if (b.hold) await b.hold;
    if (b.drop) return [];
    const build = (answers: Array<Partial<Resource>>): Buffer => {
      const res = new Packet();
      res.header = {
        ...req.header,
        qr: 1,
        ra: 1,
        aa: 0,
        rcode: b.rcode ?? 0,
        tc: transport === 'udp' && b.truncateUdp ? 1 : 0,
      } as Packet['header'];
      res.questions = req.questions;
      const full = (r: Partial<Resource>): Resource => ({ name: q.name, class: 1, ttl: 300, ...r }) as Resource;
      res.answers = transport === 'udp' && b.truncateUdp ? [] : answers.map(full);
      res.authorities = (b.authorities ?? []).map(full);
      res.additionals = b.noOpt ? [] : [Packet.Resource.EDNS([]) as unknown as Resource];
      return res.toBuffer();
    };
    const out = build(b.answers ?? []);
    // A decoy that would be believed if it were accepted: every address replaced by 6.6.6.6.
    const fake = () => build((b.answers ?? []).map((r) => (r.type === 1 ? { ...r, address: '6.6.6.6' } : r)));
    const decoys: Buffer[] = [];
    if (b.decoy === 'wrong-id') {
      const d = fake();
      d.writeUInt16BE((d.readUInt16BE(0) + 1) & 0xffff, 0);
      decoys.push(d);
    } else if (b.decoy === 'wrong-question') {
      const d = fake();
      d[13] = d[13] === 0x7a ? 0x79 : 0x7a; // first letter of the question name
      decoys.push(d);
    } else if (b.decoy === 'garbage') {
      const d = Buffer.from(out.subarray(0, 40));
      d.writeUInt16BE(0xffff, 6); // claims 65535 answers
      decoys.push(d);
    }
    return [...decoys, out];
  }

  async stop(): Promise<void> {
    this.udp.close();
    for (const c of this.conns) c.destroy();
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}
