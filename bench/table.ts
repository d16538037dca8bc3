/**
 * `npm run bench -- table`
 *  1. Table rebuild for 10,000 services / 100,000 endpoints (goal ≤200 ms, RSS ≤600 MB).
 *  2. Config save → new version visible on the api of a real `portico up` process, over 50 edits
 *     (goal p99 ≤50 ms beyond the debounce).
 *  3. Acknowledged, fsync'd puts per second: the embedded store beside Redis (`appendfsync always`).
 *  4. Many instances: three `portico up` processes on one private redis-server; a change pushed through
 *     A's api (PUT /v1/config/shared) until B and C both serve it, over 100 changes (goal p99 ≤100 ms).
 *  5. A full Marathon resync of 10,000 apps (30,000 tasks) from an api double over loopback: fetch, parse,
 *     translate, snapshot (goal ≤2 s).
 */
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Aggregator } from '../src/aggregator/index.js';
import { bigSnapshot } from '../test/helpers/snapshot.js';
import { runPortico, type PorticoProcess } from '../test/helpers/portico.js';
import { redisServerPath, startRedis } from '../test/helpers/redis.js';
import { median, percentile, ratio, report, round, say } from './lib.js';
import { benchMarathonResync } from './marathon.js';
import { benchStore } from './store.js';

const RUNS = 5;
/** The file provider's and the aggregator's debounce (their defaults): the floor of any propagation. */
const DEBOUNCE_MS = 25 + 10;

async function rebuild(): Promise<Record<string, number>> {
  const times: number[] = [];
  const ingest: number[] = [];
  const merge: number[] = [];
  const incremental: number[] = [];
  let rssPeak = 0;
  for (let run = 0; run < RUNS; run++) {
    const agg = new Aggregator({ debounceMs: 0 });
    const snap = bigSnapshot('file', 10_000, 10);
    const t0 = performance.now();
    agg.update('file', 100, snap); // canonical form + hash of the snapshot
    const tm = performance.now();
    const table = agg.flush(); // merge, conflicts, freeze, publish
    const t1done = performance.now();
    times.push(t1done - t0);
    ingest.push(tm - t0);
    merge.push(t1done - tm);
    if (table.version !== 1 || table.routes.length !== 10_000) throw new Error('rebuild bench built the wrong table');
    // One endpoint changes: what a task start costs (the aggregator re-merges everything by design).
    const next = bigSnapshot('file', 10_000, 10);
    next.services.app0!.endpoints[0]!.port = 1;
    const t1 = performance.now();
    agg.update('file', 100, next);
    agg.flush();
    incremental.push(performance.now() - t1);
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    agg.close();
  }
  const r = {
    medianMs: round(median(times)),
    maxMs: round(Math.max(...times)),
    ingestMedianMs: round(median(ingest)),
    mergeMedianMs: round(median(merge)),
    oneChangeMedianMs: round(median(incremental)),
    rssMB: Math.round(rssPeak / 2 ** 20),
  };
  say(
    `rebuild 10k services / 100k endpoints: median ${r.medianMs} ms (ingest ${r.ingestMedianMs} + merge ${r.mergeMedianMs}; max ${r.maxMs}), one endpoint changed: ${r.oneChangeMedianMs} ms, RSS ${r.rssMB} MB`,
  );
  return r;
}

const config = (port: number) => `
data: ./data
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
entrypoints:
  web: { listen: 127.0.0.1:0 }
services:
  web:
    endpoints:
      - { address: 127.0.0.1, port: ${port} }
routes:
  - { entrypoint: web, host: app.example.test, path: /, service: web }
`;

async function propagation(edits = 50): Promise<Record<string, number>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'portico-bench-'));
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, config(10_000));
  const p = runPortico(['up', '--config', cfg], { cwd: dir, env: { PORTICO_LOG_LEVEL: 'info' } });
  try {
    const up = await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
    const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
    const headers = { authorization: `Bearer ${token}` };
    const version = async (): Promise<number> => {
      const res = await fetch(`${up.api as string}/v1/table/versions`, { headers });
      const body = (await res.json()) as { versions: Array<{ version: number }> };
      return body.versions[body.versions.length - 1]?.version ?? 0;
    };
    let v = await version();
    const lat: number[] = [];
    for (let i = 1; i <= edits; i++) {
      const tmp = `${cfg}.tmp`;
      await writeFile(tmp, config(10_000 + i));
      const t0 = performance.now();
      await rename(tmp, cfg);
      const deadline = t0 + 5_000;
      let seen = v;
      while (seen === v) {
        if (performance.now() > deadline) throw new Error(`edit ${i} not visible on the api within 5 s`);
        seen = await version();
      }
      lat.push(performance.now() - t0);
      v = seen;
    }
    const r = {
      edits,
      medianMs: round(median(lat)),
      p99Ms: round(percentile(lat, 99)),
      debounceMs: DEBOUNCE_MS,
      p99BeyondDebounceMs: round(percentile(lat, 99) - DEBOUNCE_MS),
    };
    say(
      `config save → api: median ${r.medianMs} ms, p99 ${r.p99Ms} ms over ${edits} edits (debounce ${DEBOUNCE_MS} ms; p99 beyond it ${r.p99BeyondDebounceMs} ms)`,
    );
    return r;
  } finally {
    p.kill('SIGTERM');
    await p.waitForExit(15_000).catch(() => p.kill('SIGKILL'));
    await rm(dir, { recursive: true, force: true });
  }
}

/** One GET through `port` with a Host header on a keep-alive agent; resolves the status. */
function status(agent: http.Agent, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers: { host }, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

export async function clusterPropagation(changes = 100): Promise<Record<string, number> | { skipped: string }> {
  if (!redisServerPath()) return { skipped: 'redis-server is not installed' };
  const redis = await startRedis();
  const backend = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  const backendPort = (backend.address() as AddressInfo).port;
  const root = await mkdtemp(path.join(os.tmpdir(), 'portico-bench-cluster-'));
  const procs: PorticoProcess[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  try {
    const nodes = await Promise.all(
      ['a', 'b', 'c'].map(async (name) => {
        const dir = path.join(root, name);
        await mkdir(dir);
        await writeFile(
          path.join(dir, 'portico.yaml'),
          `data: ./data\nstore: ${redis.url}\napi: { listen: 127.0.0.1:0 }\ndns: { listen: 127.0.0.1:0 }\noverlay: { enabled: false }\nentrypoints:\n  web: { listen: 127.0.0.1:0 }\n`,
        );
        const p = runPortico(['up', '--config', path.join(dir, 'portico.yaml')], { cwd: dir, env: { PORTICO_LOG_LEVEL: 'info' } });
        procs.push(p);
        const up = await p.waitForLog((l) => l.msg === 'portico is up', 60_000);
        return { dir, p, up };
      }),
    );
    const info = await Promise.all(
      nodes.map(async (n) => ({
        api: n.up.api as string,
        token: (await readFile(path.join(n.dir, 'data', 'api-token'), 'utf8')).trim(),
        web: Number(
          String((await n.p.waitForLog((l) => l.msg === 'l7: listening', 10_000)).listen)
            .split(':')
            .pop(),
        ),
      })),
    );
    const [a, b, c] = info as [(typeof info)[0], (typeof info)[0], (typeof info)[0]];
    const doc = (i: number) =>
      `services:\n  api:\n    endpoints: [ { address: 127.0.0.1, port: ${backendPort} } ]\nroutes:\n  - { entrypoint: web, host: h${i}.example.test, path: /, service: api }\n`;
    const lat: number[] = [];
    for (let i = 0; i <= changes; i++) {
      const host = `h${i}.example.test`;
      const t0 = performance.now();
      const res = await fetch(`${a.api}/v1/config/shared`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/yaml' },
        body: doc(i),
      });
      if (res.status !== 200) throw new Error(`push ${i}: ${res.status} ${await res.text()}`);
      const deadline = t0 + 5000;
      await Promise.all(
        [b, c].map(async (n) => {
          while ((await status(agent, n.web, host)) !== 200) {
            if (performance.now() > deadline) throw new Error(`change ${i} not served within 5 s`);
          }
        }),
      );
      if (i > 0) lat.push(performance.now() - t0); // change 0 warms up connections and caches
    }
    const r = { instances: 3, changes, medianMs: round(median(lat)), p99Ms: round(percentile(lat, 99)), maxMs: round(Math.max(...lat)) };
    say(
      `push on A → served on B and C (3 instances, one redis-server): median ${r.medianMs} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms over ${changes} changes`,
    );
    return r;
  } finally {
    agent.destroy();
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.waitForExit(15_000).catch(() => p.kill('SIGKILL'))));
    backend.close();
    await redis.dispose();
    await rm(root, { recursive: true, force: true });
  }
}

export async function main(): Promise<void> {
  say(`table bench: ${RUNS} runs where repeated; medians`);
  const rb = await rebuild();
  const prop = await propagation();
  const cluster = await clusterPropagation();
  const marathon = await benchMarathonResync({ apps: 10_000, tasksPerApp: 3, runs: RUNS });
  const store = await benchStore();
  const e = store.embedded;
  const r = store.redis;
  say(`store puts/s (fsync'd, acknowledged): embedded ${JSON.stringify(e)} | redis appendfsync always ${JSON.stringify(r)}`);
  const redis = 'skipped' in r ? undefined : r;
  report({
    bench: 'table',
    runs: RUNS,
    results: {
      portico: { rebuild: rb, propagation: prop, clusterPropagation: cluster, marathonResync: { ...marathon }, store: { ...e } },
      redis: redis ? { store: { ...redis } } : { skipped: (r as { skipped: string }).skipped },
    },
    ratios: {
      storePutsVsRedis: ratio(e.putsPerSec, redis?.putsPerSec),
      storePutsVsRedisConcurrent: ratio(e.concurrentPutsPerSec, redis?.concurrentPutsPerSec),
    },
    goals: {
      rebuildMs: { goal: '≤200', met: rb.medianMs! <= 200 },
      rebuildRssMB: { goal: '≤600', met: rb.rssMB! <= 600 },
      propagationP99BeyondDebounceMs: { goal: '≤50', met: prop.p99BeyondDebounceMs! <= 50 },
      clusterPropagationP99Ms: { goal: '≤100', met: 'skipped' in cluster ? null : cluster.p99Ms! <= 100 },
      marathonResync10kAppsMs: { goal: '≤2000', met: marathon.medianMs <= 2000 },
    },
  });
}
