/**
 * The cluster-size fixtures the churn and start benches share (bench/churn.ts, bench/start.ts): 10,000
 * services of 10 endpoints each, as a fake Marathon's apps (bench/marathon.ts's Marathon 1.5 shape, served by
 * test/providers/marathon/api-double.ts) or as a ~4 MB config file; the `portico up` config of each feed;
 * and how long a started Portico took to serve (spawn → `portico is up`, → the first 200 on the L7 route).
 */
import type { Portico } from './portico-proc.js';
import { firstOk } from './portico-proc.js';
import { benchApp } from './marathon.js';

export const SERVICES = 10_000;
export const TASKS_PER_APP = 10;
/** Apps that keep their VIP label (every fifth of the first 5 × VIPS apps): the L4 plane health-checks every VIP backend. */
export const VIPS = 100;

export type App = Record<string, unknown> & { id: string; tasks: Task[] };
export type Task = Record<string, unknown> & {
  id: string;
  ports: number[];
  ipAddresses: Array<{ ipAddress: string; protocol: string }>;
};

/** SERVICES apps of TASKS_PER_APP tasks; VIP labels only on VIPS of them (the others' are dropped). */
export function clusterApps(): App[] {
  const apps = Array.from({ length: SERVICES }, (_, i) => benchApp(i, TASKS_PER_APP) as App);
  for (let i = 5 * VIPS; i < SERVICES; i++) {
    const app = apps[i]!;
    const defs = (app.portDefinitions ?? (app.container as { portMappings?: unknown[] } | null)?.portMappings) as
      Array<{ labels: Record<string, string> }> | undefined;
    for (const d of defs ?? []) d.labels = {};
  }
  return apps;
}

export interface MarathonConfigOptions {
  /** `workers:` (auto, 0, a count). */
  shape: string;
  /** Port of the `web` entrypoint; its `*` route goes to `backend`. */
  web: number;
  backend: number;
  marathon: string;
  /**
   * The https entrypoint the apps' HAPROXY_0_REDIRECT_TO_HTTPS routes want (a third of the apps): without it
   * each of them is a table warning.
   */
  websecure?: { port: number; certFile: string; keyFile: string } | undefined;
}

/** `portico up` fed by the fake Marathon at `marathon`. */
export function marathonConfig(o: MarathonConfigOptions): string {
  return [
    '# bench: Marathon feed',
    'data: ./data',
    `workers: ${o.shape}`,
    'api: { listen: 127.0.0.1:0 }',
    'dns: { listen: 127.0.0.1:0 }',
    'overlay: { socket: ipam.sock }',
    'entrypoints:',
    `  web: { listen: 127.0.0.1:${o.web} }`,
    ...(o.websecure
      ? [
          `  websecure: { listen: 127.0.0.1:${o.websecure.port}, tls: { certificates: [ { certFile: ${o.websecure.certFile}, keyFile: ${o.websecure.keyFile} } ] } }`,
        ]
      : []),
    'services:',
    '  front:',
    `    endpoints: [ { address: 127.0.0.1, port: ${o.backend} } ]`,
    'routes:',
    '  - { entrypoint: web, host: "*", path: /, service: front }',
    'marathon:',
    `  url: ${o.marathon}`,
    // marathon-lb binds every app's service port; 10,000 listeners per worker is not what this measures.
    '  bindServicePorts: false',
    '',
  ].join('\n');
}

/**
 * The same cluster as a YAML file (~4 MB): services file0…, each with 10 endpoints, and a route each.
 * `marker` changes one line (file0's first endpoint port), so successive markers are successive saves.
 */
export function fileConfig(shape: string, web: number, backend: number, marker: number): string {
  const lines = [
    `# bench: config file ${marker}`,
    'data: ./data',
    `workers: ${shape}`,
    'api: { listen: 127.0.0.1:0 }',
    'dns: { listen: 127.0.0.1:0 }',
    'overlay: { socket: ipam.sock }',
    'entrypoints:',
    `  web: { listen: 127.0.0.1:${web} }`,
    'services:',
    '  front:',
    '    endpoints:',
    `      - { address: 127.0.0.1, port: ${backend} }`,
  ];
  for (let i = 0; i < SERVICES; i++) {
    lines.push(`  file${i}:`, '    endpoints:');
    for (let e = 0; e < TASKS_PER_APP; e++) {
      const n = i * TASKS_PER_APP + e;
      const port = i === 0 && e === 0 ? 8000 + (marker % 1000) : 8000 + e;
      lines.push(`      - { address: 10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}, port: ${port} }`);
    }
  }
  lines.push('routes:', '  - { entrypoint: web, host: "*", path: /, service: front }');
  for (let i = 0; i < SERVICES; i++) lines.push(`  - { entrypoint: web, host: file${i}.example.test, path: /, service: file${i} }`);
  return `${lines.join('\n')}\n`;
}

/** How long a Portico took to start, ms after the spawn. */
export interface Start {
  /** spawn → `portico is up` (every plane serves the first table). */
  upMs: number;
  /** spawn → the first 200 through the L7 route. */
  firstOkMs: number;
  /** spawn → the feed's state read (`marathon state resynced` / `config loaded`). */
  feedMs?: number;
  /** spawn → the first table with it published by the pipeline (then the planes start on it). */
  tableMs?: number;
}

/** Waits for `p` to be up and to answer 200 on `web` (within `timeoutMs`), and says when each happened. */
export async function started(p: Portico, web: number, timeoutMs: number): Promise<Start> {
  const ok = firstOk(web, timeoutMs);
  const up = await p.log.until(() => p.log.up ?? (p.proc.exitCode !== null ? ({} as never) : undefined), timeoutMs, 20);
  if (!up?.time) throw new Error(`portico did not come up: ${p.log.errors.join('; ')}`);
  const okAt = await ok;
  if (okAt === undefined) throw new Error('no 200 through the L7 route');
  const s: Start = { upMs: Math.round(up.time - p.spawnedAt), firstOkMs: Math.round(okAt - p.spawnedAt) };
  const feed = p.log.resynced[0] ?? p.log.configLoaded[0];
  if (feed !== undefined) s.feedMs = Math.round(feed - p.spawnedAt);
  const table = p.log.pipeline.filter((l) => l.time <= up.time).at(-1);
  if (table) s.tableMs = Math.round(table.time - p.spawnedAt);
  return s;
}
