/**
 * The file provider against real files in a temp dir: it watches, debounces, refuses bad files while
 * the last good snapshot keeps serving, and recovers. Every wait is on a recorder (a snapshot or a log
 * line) with a bounded timeout; nothing sleeps to synchronise.
 */
import { mkdir, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { parseConfigText, type PorticoConfig } from '../../../src/config/index.js';
import type { Snapshot } from '../../../src/model/types.js';
import { FileProvider } from '../../../src/providers/file/index.js';
import { createLogger } from '../../../src/telemetry/log.js';
import { LogRecorder, SnapshotRecorder } from './recorder.js';

const good = (port: number): string => `
entrypoints:
  web: { listen: 127.0.0.1:0 }
services:
  web:
    endpoints:
      - { address: 127.0.0.1, port: ${port} }
routes:
  - { entrypoint: web, host: app.example.test, service: web }
`;

const bad = `
entrypoints:
  web: { listen: 127.0.0.1:0 }
services:
  web:
    endpoints:
      - { address: 127.0.0.1, port: 99999 }
`;

interface Harness {
  dir: string;
  file: string;
  provider: FileProvider;
  snaps: SnapshotRecorder;
  logs: LogRecorder;
  configs: PorticoConfig[];
}

async function harness(
  t: Test,
  initial: string | undefined,
  opts: { debounceMs?: number; parsed?: { text: string; config: PorticoConfig } } = {},
): Promise<Harness> {
  const dir = t.testdir(initial === undefined ? {} : { 'portico.yaml': initial });
  const file = join(dir, 'portico.yaml');
  const snaps = new SnapshotRecorder();
  const logs = new LogRecorder();
  const configs: PorticoConfig[] = [];
  const provider = new FileProvider({
    path: file,
    logger: createLogger({ level: 'debug', destination: logs }),
    onConfig: (cfg) => configs.push(cfg),
    ...opts,
  });
  t.teardown(() => provider.stop());
  await provider.start(snaps.sink);
  return { dir, file, provider, snaps, logs, configs };
}

/** The first endpoint port of service `web`: what the fixtures change between saves. */
function port(s: Snapshot | undefined): number | undefined {
  return s?.services.web?.endpoints[0]?.port;
}

t.test('starts and sends a snapshot', async (t) => {
  const h = await harness(t, good(9001));
  t.equal(h.snaps.count, 1, 'sent before start() resolved');
  const snap = h.snaps.items[0];
  t.equal(snap?.provider, 'file');
  t.equal(port(snap), 9001);
  t.same(
    snap?.routes.map((r) => r.service),
    ['web'],
  );
  const status = h.provider.status();
  t.equal(status.name, 'file');
  t.equal(status.priority, 100);
  t.equal(status.state, 'ok');
  t.type(status.lastUpdate, 'string');
  t.equal(status.lastError, undefined);
  t.same(status.details, { file: h.file });
  t.equal(h.configs.length, 1, 'onConfig called');
  t.equal(h.provider.config, h.configs[0]);
});

t.test('the config parsed at start is taken for the first load when the file still holds its text', async (t) => {
  const config = parseConfigText(good(9001));
  const h = await harness(t, good(9001), { parsed: { text: good(9001), config } });
  t.equal(h.configs[0], config, 'not parsed again: the very object');
  t.equal(port(h.snaps.items[0]), 9001);
  // Only the first load: a later one parses what the file holds.
  const next = h.snaps.next();
  await writeFile(h.file, good(9002));
  t.equal(port(await next), 9002);
  t.not(h.configs[1], config);
});

t.test('a file changed since the config was parsed at start is parsed again', async (t) => {
  const stale = parseConfigText(good(9001));
  const h = await harness(t, good(9003), { parsed: { text: good(9001), config: stale } });
  t.equal(port(h.snaps.items[0]), 9003, 'what the file holds now');
  t.not(h.configs[0], stale);
});

t.test('an edit in place produces a new snapshot', async (t) => {
  const h = await harness(t, good(9001));
  const next = h.snaps.next();
  await writeFile(h.file, good(9002));
  t.equal(port(await next), 9002);
  t.equal(h.provider.status().state, 'ok');
  t.equal(h.configs.length, 2);
});

t.test('an atomic save (temp file renamed over the config) produces a new snapshot, and keeps working', async (t) => {
  const h = await harness(t, good(9001));
  for (const p of [9002, 9003]) {
    const next = h.snaps.next();
    const tmp = join(h.dir, `.portico.yaml.${p}.swp`);
    await writeFile(tmp, good(p));
    await rename(tmp, h.file);
    t.equal(port(await next), p, `rename-save ${p}`);
  }
});

t.test('a bad edit keeps the last good snapshot and reports file:line; fixing it recovers', async (t) => {
  const h = await harness(t, good(9001));
  const from = h.logs.count;
  await writeFile(h.file, bad);
  const record = await h.logs.message('config file refused', from);
  t.equal(record.level, 50, 'logged at error level');
  t.match(record.issues, [{ path: 'services.web.endpoints[0].port', line: 7 }], 'issues in the log record');
  await h.provider.reload(); // let any load queued by further events finish
  t.equal(h.snaps.count, 1, 'nothing sent');

  const status = h.provider.status();
  t.equal(status.state, 'error');
  t.equal(status.lastError, `${h.file}:7:37: services.web.endpoints[0].port: must be 1..65535 (got 99999)`);
  t.type(status.lastErrorAt, 'string');
  t.equal(h.provider.config?.services.web?.endpoints[0]?.port, 9001, 'last good config kept');

  const next = h.snaps.next();
  await writeFile(h.file, good(9005));
  t.equal(port(await next), 9005, 'fixed file is sent');
  const recovered = h.provider.status();
  t.equal(recovered.state, 'ok');
  t.equal(recovered.lastError, undefined);
  t.equal(recovered.lastErrorAt, undefined);
});

t.test('a save that changes one service hands on the other services and the routes as the objects sent before', async (t) => {
  const two = (port: number): string =>
    `${good(port)}  api:
    endpoints:
      - { address: 127.0.0.1, port: 7000 }
`.replace('routes:\n  - { entrypoint: web, host: app.example.test, service: web }\n', '') +
    'routes:\n  - { entrypoint: web, host: app.example.test, service: web }\n';
  const h = await harness(t, two(9001));
  const first = h.snaps.items[0] as Snapshot;
  t.ok(first.services.api && first.services.web, 'both services');
  const next = h.snaps.next();
  await writeFile(h.file, two(9002));
  const second = await next;
  t.equal(port(second), 9002);
  t.not(second.services.web, first.services.web, 'the edited service is new');
  t.equal(second.services.api, first.services.api, 'the other is the object sent before (the aggregator skips it)');
  t.equal(second.routes[0], first.routes[0], 'so is the unchanged route');
  t.equal(h.configs.length, 2, 'onConfig called with the new config');
});

t.test('identical content re-saved sends nothing (comments and key order do not count)', async (t) => {
  const h = await harness(t, good(9001));
  const from = h.logs.count;
  await writeFile(h.file, `# a comment\n${good(9001)}`);
  await h.logs.message('config unchanged', from);
  await h.provider.reload();
  t.equal(h.snaps.count, 1, 'nothing sent');
  t.equal(h.configs.length, 1, 'onConfig not called again');
  t.equal(h.provider.status().state, 'ok');
});

t.test('the file deleted then created again', async (t) => {
  const h = await harness(t, good(9001));
  const from = h.logs.count;
  await unlink(h.file);
  await h.logs.message('does not exist', from);
  t.equal(h.provider.status().state, 'error');
  t.match(h.provider.status().lastError, /does not exist.*serving the last good configuration/);
  t.equal(h.snaps.count, 1, 'a deleted file withdraws nothing');

  const next = h.snaps.next();
  await writeFile(h.file, good(9007));
  t.equal(port(await next), 9007);
  t.equal(h.provider.status().state, 'ok');
});

t.test('a missing file at start: error state, then the file appears', async (t) => {
  const h = await harness(t, undefined);
  t.equal(h.snaps.count, 0);
  const status = h.provider.status();
  t.equal(status.state, 'error');
  t.equal(status.lastError, `config file ${h.file} does not exist; watching for it to be created`);

  const next = h.snaps.next();
  await writeFile(h.file, good(9001));
  t.equal(port(await next), 9001);
  t.equal(h.provider.status().state, 'ok');
});

t.test('a bad file at start: nothing sent, error state, start() still resolves', async (t) => {
  const h = await harness(t, bad);
  t.equal(h.snaps.count, 0);
  t.equal(h.provider.status().state, 'error');
  t.match(h.provider.status().lastError, /portico\.yaml:7:37: services\.web\.endpoints\[0\]\.port/);
  t.equal(h.provider.config, undefined);
});

t.test('reload() (SIGHUP) reads the file now', async (t) => {
  // A debounce far longer than the test: only reload() can pick changes up.
  const h = await harness(t, good(9001), { debounceMs: 600_000 });
  await writeFile(h.file, good(9002));
  t.equal(await h.provider.reload(), true);
  t.equal(h.snaps.count, 2);
  t.equal(port(h.snaps.items[1]), 9002);

  t.equal(await h.provider.reload(), true, 'unchanged is still a good file');
  t.equal(h.snaps.count, 2, 'but nothing is sent');

  await writeFile(h.file, bad);
  t.equal(await h.provider.reload(), false);
  t.equal(h.snaps.count, 2);
  t.equal(h.provider.status().state, 'error');

  await rm(h.file);
  t.equal(await h.provider.reload(), false);
  t.match(h.provider.status().lastError, /does not exist/);
});

t.test('concurrent reloads run in order', async (t) => {
  const h = await harness(t, good(9001), { debounceMs: 600_000 });
  await writeFile(h.file, good(9002));
  const results = await Promise.all([h.provider.reload(), h.provider.reload(), h.provider.reload()]);
  t.same(results, [true, true, true]);
  t.equal(h.snaps.count, 2, 'one send for one change');
});

t.test('a throwing sink degrades the provider and the next load retries', async (t) => {
  const dir = t.testdir({ 'portico.yaml': good(9001) });
  let fail = true;
  const received: number[] = [];
  const provider = new FileProvider({ path: join(dir, 'portico.yaml'), debounceMs: 600_000 });
  t.teardown(() => provider.stop());
  await provider.start((s) => {
    if (fail) throw new Error('aggregator closed');
    received.push(port(s) ?? 0);
  });
  t.equal(provider.status().state, 'degraded');
  t.match(provider.status().lastError, /not accepted: aggregator closed/);
  fail = false;
  t.equal(await provider.reload(), true);
  t.same(received, [9001], 'sent again, since it never got through');
  t.equal(provider.status().state, 'ok');
});

t.test('stop(): stopped state, no more sends, idempotent', async (t) => {
  const h = await harness(t, good(9001), { debounceMs: 600_000 });
  await h.provider.stop();
  await h.provider.stop();
  t.equal(h.provider.status().state, 'stopped');
  await writeFile(h.file, good(9002));
  t.equal(await h.provider.reload(), false);
  t.equal(h.snaps.count, 1);
});

t.test('name and priority are options', async (t) => {
  const dir = t.testdir({ 'a.yaml': good(9001) });
  const provider = new FileProvider({ path: join(dir, 'a.yaml'), name: 'site', priority: 5 });
  t.teardown(() => provider.stop());
  const snaps = new SnapshotRecorder();
  await provider.start(snaps.sink);
  t.equal(snaps.items[0]?.provider, 'site');
  t.match(provider.status(), { name: 'site', priority: 5, state: 'ok' });
  await t.rejects(provider.start(snaps.sink), /already started/);
});

t.test('a Kubernetes ConfigMap swap (..data symlink flip) is seen', async (t) => {
  const dir = t.testdir({ '..v1': { 'portico.yaml': good(9001) }, '..v2': { 'portico.yaml': good(9002) } });
  await symlink('..v1', join(dir, '..data'));
  await symlink('..data/portico.yaml', join(dir, 'portico.yaml'));
  const snaps = new SnapshotRecorder();
  const provider = new FileProvider({ path: join(dir, 'portico.yaml') });
  t.teardown(() => provider.stop());
  await provider.start(snaps.sink);
  t.equal(port(snaps.items[0]), 9001);

  const next = snaps.next();
  await symlink('..v2', join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  t.equal(port(await next), 9002);
});

t.test('the directory itself appears later', async (t) => {
  const root = t.testdir({});
  const dir = join(root, 'conf.d');
  const snaps = new SnapshotRecorder();
  const provider = new FileProvider({ path: join(dir, 'portico.yaml') });
  t.teardown(() => provider.stop());
  await provider.start(snaps.sink);
  t.equal(provider.status().state, 'error');
  const next = snaps.next(0, 10_000);
  await mkdir(dir);
  await writeFile(join(dir, 'portico.yaml'), good(9001));
  t.equal(port(await next), 9001, 're-armed and read');
});
