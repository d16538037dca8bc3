/**
 * The composition root's lifecycle (src/main.ts): what starts is unwound on any start error, a change made
 * while the parts start is not lost, a table published at any moment of the start is safe, and what the
 * planes serve is what the api shows. Real `up()` (in this process, or the real `portico up` command),
 * real listeners on ephemeral ports, the embedded store in a test directory.
 */
import net from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import { up, type Appliance } from '../../src/main.js';
import type { TableStage } from '../../src/aggregator/pipeline.js';
import type { DataPlane, PlaneStatus } from '../../src/model/plane.js';
import type { RoutingTable, Snapshot } from '../../src/model/types.js';
import { PLANES } from '../../src/planes.js';
import { PROVIDERS } from '../../src/providers/index.js';
import type { Provider, SnapshotSink } from '../../src/providers/types.js';
import { STAGES } from '../../src/stages.js';
import { createLogger, silentLogger } from '../../src/telemetry/log.js';
import { runPortico } from '../helpers/portico.js';
import { waitFor } from '../helpers/wait.js';
import { endpoint, service, snapshot } from '../helpers/snapshot.js';

const config = (extra = '') => `
data: ./data
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
overlay: { enabled: false }
entrypoints:
  web: { listen: 127.0.0.1:0 }
services:
  web:
    endpoints:
      - { address: 127.0.0.1, port: 9001 }
    vips: [ { name: web, port: 80 } ]
routes:
  - { entrypoint: web, host: app.example.test, service: web }
${extra}`;

async function start(
  t: { testdir(): string; teardown(fn: () => unknown): void },
  text: string,
  extra: Partial<Parameters<typeof up>[0]> = {},
): Promise<Appliance> {
  const dir = t.testdir();
  const file = path.join(dir, 'portico.yaml');
  await writeFile(file, text);
  const app = await up({ configPath: file, data: path.join(dir, 'data'), logger: silentLogger, drainMs: 0, ...extra });
  t.teardown(() => app.stop());
  return app;
}

async function api(app: Appliance, p: string): Promise<any> {
  const token = (await readFile(app.tokenFile, 'utf8')).trim();
  const res = await fetch(`http://127.0.0.1:${app.apiAddress.port}${p}`, { headers: { authorization: `Bearer ${token}` } });
  return res.json();
}

t.test('GET /v1/table is exactly what the planes serve: VIP addresses included, one version', async (t) => {
  const app = await start(t, config());
  const table = await api(app, '/v1/table');
  const vip = table.vips.find((v: any) => v.name === 'web');
  t.match(vip?.ip, /^11\.\d+\.\d+\.\d+$/, 'the named VIP carries the address the stages gave it');
  const l4 = await api(app, '/v1/vips');
  t.equal(l4.vips.find((v: any) => v.name === 'web')?.ip, vip.ip, 'the L4 plane binds that same address');
  for (const p of app.planes) t.equal(p.status().tableVersion, table.version, `plane ${p.name} serves version ${table.version}`);
  t.equal(table.hash, app.pipeline.current().hash);
  t.not(table.hash, app.aggregator.current().hash, 'the served hash covers the addresses, the built one does not');
});

t.test('a change published while the planes start is served without any further change', async (t) => {
  // A feed the test drives, a stage that reports when a table went through, and a plane whose start()
  // makes the change and returns only once the change has been served.
  let sink: SnapshotSink | undefined;
  const feed: Provider = {
    name: 'probe',
    priority: 10,
    start: async (s) => {
      sink = s;
      s(snapshot('probe'));
    },
    stop: async () => undefined,
    status: () => ({ name: 'probe', priority: 10, state: 'ok' }),
  };
  let sawLate!: () => void;
  const lateThrough = new Promise<void>((r) => (sawLate = r));
  const watcher: TableStage = {
    name: 'probe',
    apply: (table) => {
      if (table.services.get('late@probe')) sawLate();
      return table;
    },
  };
  const late: Snapshot = snapshot('probe', { services: { late: service([endpoint('127.0.0.1', 9009)], { name: 'late' }) } });
  const applied: RoutingTable[] = [];
  let startedOn: RoutingTable | undefined;
  const probe: DataPlane = {
    name: 'probe',
    start: async (table) => {
      startedOn = table;
      sink!(late);
      await lateThrough;
      await nextTurn(); // the pipeline serves it (microtasks only after the last stage)
    },
    apply: (table) => void applied.push(table),
    stop: async () => undefined,
    status: (): PlaneStatus => ({ name: 'probe', state: 'serving', listeners: [], tableVersion: applied.at(-1)?.version ?? 0 }),
  };
  const app = await start(t, config(), {
    providers: [...PROVIDERS, { name: 'probe', create: () => feed }],
    stages: [...STAGES, { name: 'probe', create: () => watcher }],
    planes: [...PLANES, { name: 'probe', create: () => probe }],
  });
  t.notOk(startedOn?.services.get('late@probe'), 'the planes started on a table without the change');
  const served = app.pipeline.current();
  t.ok(served.services.get('late@probe'), 'the change is served');
  t.ok(applied.at(-1)?.services.get('late@probe'), 'the plane that was starting got it');
  for (const p of app.planes) t.equal(p.status().tableVersion, served.version, `plane ${p.name} serves it too`);
  t.ok((await api(app, '/v1/table')).services['late@probe'], 'and the api shows it');
});

t.test('a start error unwinds every part that started, the overlay IPAM included', async (t) => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.teardown(() => taken.close());
  const port = (taken.address() as net.AddressInfo).port;
  const dir = t.testdir();
  const file = path.join(dir, 'portico.yaml');
  // (a short absolute path: a Unix socket path holds 107 bytes, and the test directory's is longer)
  const sockDir = await mkdtemp(path.join(os.tmpdir(), 'portico-'));
  t.teardown(() => rm(sockDir, { recursive: true, force: true }));
  const sock = path.join(sockDir, 'ipam.sock');
  const text = config().replace('overlay: { enabled: false }', `overlay: { socket: ${sock} }`);
  await writeFile(file, text);
  const data = path.join(dir, 'data');
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
  });
  await t.rejects(
    up({ configPath: file, data, apiListen: `127.0.0.1:${port}`, logger, drainMs: 0 }),
    { code: 'PORTICO_LISTEN_FAILED', message: /api/ },
    'the api cannot listen: up() rejects',
  );
  t.ok(
    lines.some((l) => l.msg === 'overlay IPAM serving' && l.socket === sock),
    'the overlay IPAM had started',
  );
  const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    const c = net.connect(sock, () => {
      c.destroy();
      resolve(undefined);
    });
    c.on('error', resolve);
  });
  t.ok(err && ['ECONNREFUSED', 'ENOENT'].includes(err.code ?? ''), `the IPAM socket is closed (${err?.code ?? 'it accepted'})`);

  // Everything else was released too: the same data directory starts again (store lock, listeners).
  const app = await up({ configPath: file, data, logger: silentLogger, drainMs: 0 });
  t.teardown(() => app.stop());
  t.same(
    app.pipeline.current().routes.map((r) => r.host),
    ['app.example.test'],
    'it starts again on the same data directory and serves',
  );
});

t.test('portico up: config rewrites in a tight loop while it starts; it comes up and serves the last file', async (t) => {
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  const host = (i: number | string) => config().replace('app.example.test', `v${i}.example.test`);
  await writeFile(cfg, host(0));
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  let exited = false;
  p.proc.on('exit', () => (exited = true));
  let isUp = false;
  const upLine = p
    .waitForLog((l) => l.msg === 'portico is up', 60_000)
    .then((l) => {
      isUp = true;
      return l;
    });
  // Rewrite as fast as the file system takes it until the process is up (or gone), and a few more times.
  let i = 1;
  for (let after = 0; !exited && after < 50 && i < 20_000; i++) {
    await writeFile(cfg, host(i));
    if (isUp) after++;
  }
  const line = await upLine;
  await writeFile(cfg, host('final'));
  const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
  const hosts = async () => {
    const res = await fetch(`${line.api as string}/v1/table`, { headers: { authorization: `Bearer ${token}` } });
    return ((await res.json()) as { routes: Array<{ host: string }> }).routes.map((r) => r.host);
  };
  const served = await waitFor(
    async () => {
      const h = await hosts();
      return h.includes('vfinal.example.test') ? h : undefined;
    },
    { timeoutMs: 15_000, what: "the last file's table on /v1/table" },
  );
  t.same(served, ['vfinal.example.test'], `the last file's table is served (after ${i} rewrites)`);
  t.notOk(exited, 'the process is still running');
  t.notOk(
    p.logs.some((l) => l.level >= 60 || /ReferenceError|unhandled/i.test(JSON.stringify(l))),
    'no fatal error, no unhandled rejection',
  );
});
