/**
 * Several real `portico up` processes sharing one store, for the multi-instance tests: start them,
 * talk to their admin api, and send requests through their L7 entrypoint.
 */
import http from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Test } from 'tap';
import { runPortico, type PorticoProcess } from './portico.js';
import { waitFor } from './wait.js';

export interface Instance {
  name: string;
  p: PorticoProcess;
  api: string;
  token: string;
  /** Port of its `web` entrypoint. */
  web: number;
}

/** Start `names.length` instances on `store`, each in its own dir under `root` (killed at teardown). */
export async function startInstances(t: Test, root: string, store: string, names: string[], extraYaml = ''): Promise<Instance[]> {
  return Promise.all(
    names.map(async (name) => {
      const dir = path.join(root, name);
      await mkdir(dir, { recursive: true });
      const cfg = path.join(dir, 'portico.yaml');
      await writeFile(
        cfg,
        `
data: ./data
store: ${store}
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
overlay: { enabled: false }
entrypoints:
  web: { listen: 127.0.0.1:0 }
${extraYaml}`,
      );
      const p = runPortico(['up', '--config', cfg], { cwd: dir });
      t.teardown(() => p.kill('SIGKILL'));
      const listening = await p.waitForLog((l) => l.msg === 'l7: listening', 30_000);
      const up = await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
      const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
      return { name, p, api: up.api as string, token, web: Number(String(listening.listen).split(':').pop()) };
    }),
  );
}

/** One GET through an instance's entrypoint, with a Host header; no keep-alive. */
export function httpGet(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** An admin api call with the instance's token; a body is sent as YAML. */
export async function adminApi(
  i: Instance,
  method: string,
  p: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: any }> {
  const res = await fetch(`${i.api}${p}`, {
    method,
    headers: { authorization: `Bearer ${i.token}`, ...(body !== undefined && { 'content-type': 'application/yaml' }), ...headers },
    ...(body !== undefined && { body }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** A shared config with one service (`api`, one endpoint) and one route on `web`. */
export const sharedDoc = (host: string, port: number): string => `
services:
  api:
    endpoints: [ { address: 127.0.0.1, port: ${port} } ]
routes:
  - { entrypoint: web, host: ${host}, path: /, service: api }
`;

/** Wait until every instance answers 200 for `host`. */
export function servedEverywhere(instances: Instance[], host: string, what: string, timeoutMs = 10_000): Promise<unknown> {
  return Promise.all(
    instances.map((i) =>
      waitFor(async () => (await httpGet(i.web, host)).status === 200, { timeoutMs, what: `${what} on instance ${i.name}` }),
    ),
  );
}

/**
 * Requests through every instance in a loop until stopped: counts successes, lists failures.
 * Bounded: it stops itself after `maxMs`.
 */
export function loadLoop(
  instances: Instance[],
  host: string,
  maxMs = 60_000,
): { ok: () => number; failures: string[]; stop: () => Promise<void> } {
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const until = Date.now() + maxMs;
  const done = (async () => {
    while (running && Date.now() < until) {
      await Promise.all(
        instances.map(async (i) => {
          try {
            const r = await httpGet(i.web, host);
            if (r.status === 200) ok++;
            else failures.push(`${i.name}: ${r.status}`);
          } catch (err) {
            failures.push(`${i.name}: ${(err as Error).message}`);
          }
        }),
      );
    }
  })();
  return {
    ok: () => ok,
    failures,
    stop: async () => {
      running = false;
      await done;
    },
  };
}
