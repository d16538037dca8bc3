/**
 * Test helpers for the admin api: a real ApiServer on 127.0.0.1:0 in front of a real Aggregator, torn
 * down with the test, and hand-made snapshots.
 */
import { Aggregator } from '../../src/aggregator/aggregator.js';
import { ApiServer } from '../../src/api/server.js';
import type { ApiDeps } from '../../src/api/types.js';
import type { Snapshot } from '../../src/model/types.js';
import { createRegistry } from '../../src/telemetry/metrics.js';

export const TOKEN = 'a'.repeat(64);

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface RequestOptions {
  method?: string;
  /** Default: the right token. `null`: no Authorization header at all. */
  token?: string | null;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export async function startApi(t: Teardown, overrides: Partial<ApiDeps> = {}) {
  const registry = createRegistry({ defaultMetrics: false });
  const aggregator = new Aggregator({ debounceMs: 0, historySize: 5, registry });
  const deps: ApiDeps = { tables: aggregator, providers: () => [], planes: () => [], registry, token: TOKEN, ...overrides };
  const api = new ApiServer(deps);
  const addr = await api.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await api.close();
    aggregator.close();
  });
  const base = `http://127.0.0.1:${addr.port}`;
  const request = async (path: string, opts: RequestOptions = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? TOKEN : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${base}${path}`, {
      method: opts.method ?? 'GET',
      headers,
      ...(opts.body !== undefined ? { body: opts.body } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json };
  };
  return { api, aggregator, registry, deps, addr, base, request };
}

/** A snapshot with one service per name (one endpoint each) and a route to each on entrypoint `web`. */
export function snapshot(provider: string, names: string[]): Snapshot {
  const services: Snapshot['services'] = {};
  names.forEach((name, i) => {
    services[name] = {
      name,
      framework: 'marathon',
      endpoints: [{ address: '127.0.0.1', port: 9000 + i, weight: 1, health: 'healthy', labels: {} }],
      balance: { algorithm: 'roundrobin' },
      vips: [],
      labels: {},
    };
  });
  return {
    provider,
    services,
    routes: names.map((n) => ({ entrypoint: 'web', host: `${n}.example.test`, path: '/', pathMatch: 'prefix' as const, service: n })),
    entrypoints: { web: { name: 'web', listen: '127.0.0.1:8080', trustedProxies: [] } },
  };
}
