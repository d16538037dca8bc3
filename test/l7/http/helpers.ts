/**
 * Test helpers for the HTTP/1.1 parser: feed an input in any split and record a transcript (what the
 * parser said, message by message), so one input fed whole, byte by byte and in random pieces can be
 * compared for identical results.
 */
import { HttpParser, Kind, type Limits, type MessageHead, type Phase } from '../../../src/l7/http/parser.js';
import type { ParseErrorCode } from '../../../src/l7/http/errors.js';

export interface Message {
  head: MessageHead;
  /** The decoded body, latin1. */
  body: string;
  trailers?: string[];
  complete: boolean;
}

export interface Transcript {
  messages: Message[];
  error?: ParseErrorCode;
  status?: number;
  /** Bytes of the input consumed; only meaningful without an error (an upgrade's or a close's stop point). */
  consumed: number;
  phase: Phase;
}

export interface FeedOptions {
  limits?: Partial<Limits>;
  /** Call finish() after the last byte (EOF). Default true. */
  finish?: boolean;
  /** Responses: set expectNoBody / expectTunnel before each response (by index of final responses). */
  expectNoBody?: (index: number) => boolean;
  expectTunnel?: (index: number) => boolean;
}

/** Cut points (sorted offsets strictly inside the input) for the usual ways of splitting it. */
export function cutsWhole(): number[] {
  return [];
}
export function cutsBytes(len: number): number[] {
  return Array.from({ length: Math.max(0, len - 1) }, (_, i) => i + 1);
}
export function cutsRandom(len: number, rng: Rng): number[] {
  const n = rng.int(Math.min(len, 12) + 1);
  const set = new Set<number>();
  for (let i = 0; i < n; i++) if (len > 1) set.add(1 + rng.int(len - 1));
  return [...set].sort((a, b) => a - b);
}

/**
 * Feed `input` in pieces cut at `cuts`. Each piece is a fresh copy that is overwritten after execute()
 * returns, so a parser that kept a reference to consumed bytes (instead of copying) is caught.
 */
export function feed(kind: Kind, input: Buffer, cuts: number[], opts: FeedOptions = {}): Transcript {
  const p = new HttpParser(kind, opts.limits);
  const messages: Message[] = [];
  let cur: Message | undefined;
  let finals = 0;
  const arm = (): void => {
    p.expectNoBody = opts.expectNoBody?.(finals) ?? false;
    p.expectTunnel = opts.expectTunnel?.(finals) ?? false;
  };
  arm();
  p.onHead = (head) => {
    cur = { head, body: '', complete: false };
    messages.push(cur);
    if (kind === Kind.Response && head.status >= 200) finals++;
  };
  p.onBody = (chunk) => {
    if (!cur) throw new Error('onBody before onHead');
    cur.body += chunk.toString('latin1');
  };
  p.onTrailers = (trailers) => {
    if (!cur) throw new Error('onTrailers before onHead');
    cur.trailers = trailers;
  };
  p.onComplete = () => {
    if (!cur) throw new Error('onComplete before onHead');
    cur.complete = true;
    cur = undefined;
    arm();
  };
  let consumed = 0;
  let stopped = false;
  const bounds = [0, ...cuts, input.length];
  for (let i = 0; i + 1 < bounds.length && !stopped; i++) {
    const piece = Buffer.from(input.subarray(bounds[i], bounds[i + 1]));
    const n = p.execute(piece, 0);
    if (n < 0 || n > piece.length) throw new Error(`execute returned ${n} for a piece of ${piece.length}`);
    consumed += n;
    if (n < piece.length) stopped = true;
    piece.fill(0xee);
  }
  if (!stopped && opts.finish !== false) p.finish();
  const t: Transcript = { messages, consumed, phase: p.phase };
  if (p.error) {
    t.error = p.error.code;
    t.status = p.error.status;
  }
  return t;
}

/** A transcript in a form to compare with t.same (the consumed offset only counts without an error). */
export function comparable(t: Transcript): unknown {
  return { ...t, consumed: t.error ? undefined : t.consumed, messages: t.messages.map((m) => ({ ...m, head: { ...m.head } })) };
}

/** Seeded PRNG (mulberry32): failures reproduce from the printed seed. */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }
  /** A uint32. */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.next() % n;
  }
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from an empty list');
    return xs[this.int(xs.length)] as T;
  }
}

/** The seed from PORTICO_SEED, or a fresh one. */
export function seedFromEnv(): number {
  const env = process.env.PORTICO_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

export const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
