/** Deterministic randomness, a hand-driven clock and small model builders for balancer tests. */
import {
  RequestPickContext,
  resolveBalanceOptions,
  UpstreamSet,
  type BalanceOptions,
  type ResolvedBalanceOptions,
} from '../../../src/l7/balance/index.js';
import type { Upstream } from '../../../src/l7/balance/index.js';
import type { Balance, Endpoint, Service } from '../../../src/model/types.js';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns the given values in turn (Traefik's mockRand). */
export function sequence(...vals: number[]): () => number {
  let i = 0;
  return () => vals[i++ % vals.length] as number;
}

export class Clock {
  t = 1_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export function ep(host: number | string, extra: Partial<Endpoint> = {}): Endpoint {
  const address = typeof host === 'number' ? `10.0.0.${host}` : host;
  return { address, port: 8080, weight: 1, health: 'healthy', labels: {}, ...extra };
}

export function service(endpoints: Endpoint[], balance: Balance = { algorithm: 'roundrobin' }, id = 'web@test'): Service {
  return { name: id.split('@')[0] as string, id, provider: 'test', framework: 'marathon', endpoints, balance, vips: [], labels: {} };
}

/** Options for tests: fixed clock, seeded randomness, slow start off unless asked. */
export function options(clock: Clock, extra: BalanceOptions = {}): ResolvedBalanceOptions {
  return resolveBalanceOptions({ now: clock.now, rnd: seeded(42), slowStartMs: 0, stickySecret: 'test-secret', ...extra });
}

export function makeSet(
  endpoints: Endpoint[],
  balance?: Balance,
  clock = new Clock(),
  extra: BalanceOptions = {},
): { set: UpstreamSet; clock: Clock } {
  return { set: new UpstreamSet(service(endpoints, balance), undefined, options(clock, extra)), clock };
}

export interface CtxSpec {
  ip?: string;
  headers?: Record<string, string>;
  exclude?: Upstream;
}

/** A reusable context over a record of headers; counts Cookie header reads. */
export class TestContext extends RequestPickContext {
  cookieReads = 0;
  private h: Record<string, string> = {};
  private readonly getter = (name: string): string | undefined => {
    if (name === 'cookie') this.cookieReads++;
    return Object.prototype.hasOwnProperty.call(this.h, name) ? this.h[name] : undefined;
  };
  set(spec: CtxSpec = {}): this {
    this.h = spec.headers ?? {};
    return this.reset(spec.ip ?? '', this.getter, spec.exclude);
  }
}

export function ctx(spec: CtxSpec = {}): TestContext {
  return new TestContext().set(spec);
}

/** How many of `n` picks each upstream key got. */
export function tally(pick: () => Upstream | undefined, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const u = pick();
    const k = u ? u.key : 'none';
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
