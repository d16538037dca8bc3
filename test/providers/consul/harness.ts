/**
 * Harness for the Consul provider tests: a Consul api double (double.ts — no Consul binary can be
 * installed here), a provider pointed at it with short backoff and rate-limit settings, a snapshot
 * recorder and a log recorder. Everything is torn down with the test.
 */
import type { Test } from 'tap';
import type { Snapshot } from '../../../src/model/types.js';
import { ConsulProvider } from '../../../src/providers/consul/index.js';
import type { ConsulProviderOptions } from '../../../src/providers/consul/index.js';
import { createLogger } from '../../../src/telemetry/log.js';
import { Recorder } from '../../helpers/wait.js';
import { ConsulDouble } from './double.js';
import type { DoubleOptions } from './double.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino destination keeping every line, parsed, and the raw text (to look for leaked secrets). */
export class LogSink extends Recorder<LogLine> {
  raw = '';
  write(chunk: string): void {
    this.raw += chunk;
    for (const l of chunk.split('\n')) if (l.trim() !== '') this.push(JSON.parse(l) as LogLine);
  }
}

export interface Harness {
  consul: ConsulDouble;
  provider: ConsulProvider;
  snaps: Recorder<Snapshot>;
  logs: LogSink;
}

export interface HarnessOptions {
  double?: DoubleOptions;
  provider?: Partial<ConsulProviderOptions>;
  /** Register services etc. before the provider starts. */
  setup?: (consul: ConsulDouble) => void | Promise<void>;
  /** Start the provider (default true). */
  start?: boolean;
}

/** Fast test settings: a long wait (so a missed update shows as a timeout), quick retries. */
export const FAST: Partial<ConsulProviderOptions> = {
  waitMs: 30_000,
  requestTimeoutMs: 2_000,
  backoff: { initialMs: 20, maxMs: 200 },
  rateLimit: { burst: 2, intervalMs: 50 },
  debounceMs: 10,
};

export async function harness(t: Test, opts: HarnessOptions = {}): Promise<Harness> {
  const consul = await ConsulDouble.start(opts.double);
  await opts.setup?.(consul);
  const snaps = new Recorder<Snapshot>();
  const logs = new LogSink();
  const provider = new ConsulProvider({
    url: consul.url,
    logger: createLogger({ level: 'debug', destination: logs }),
    ...FAST,
    ...opts.provider,
  });
  t.teardown(async () => {
    await provider.stop();
    await consul.close();
  });
  if (opts.start !== false) await provider.start(snaps.push);
  return { consul, provider, snaps, logs };
}

/** Endpoints of a service in a snapshot as `address:port`, in snapshot order. */
export function eps(s: Snapshot, service: string): string[] {
  return (s.services[service]?.endpoints ?? []).map((e) => `${e.address}:${e.port}`);
}

/** How many blocking loops the provider runs: the catalog plus one per watched service. */
export function watches(provider: ConsulProvider): number {
  return provider.status().details?.watches as number;
}
