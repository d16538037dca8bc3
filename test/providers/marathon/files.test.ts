/**
 * AppsDirProvider: a directory of Marathon app JSON files (the shapes Marathon's docs show: an app
 * definition, a `/v2/apps?embed=apps.tasks` answer, `/v2/tasks` tasks), watched for changes. A bad file is
 * reported with its path and reason while the good ones — and its own last good content — keep serving.
 * Waits are on recorders (a snapshot, a log line), never sleeps.
 */
import { readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import type { Snapshot } from '../../../src/model/types.js';
import { AppsDirProvider, parseAppsFile } from '../../../src/providers/marathon/index.js';
import { createLogger } from '../../../src/telemetry/log.js';
import { LogRecorder, SnapshotRecorder } from '../file/recorder.js';

const FIX = join(__dirname, 'fixtures');

/** Marathon docs' examples/app.json (docker BRIDGE, a `vip` port label, an HTTP health check), with its instances. */
function webFile(): string {
  const app = JSON.parse(readFileSync(join(FIX, 'app-docker-bridge.json'), 'utf8')) as Record<string, unknown>;
  app.id = '/web';
  app.labels = { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: 'web.example.test' };
  // Marathon's task JSON; no healthCheckResults: nobody runs Marathon's checks for a file.
  app.tasks = [
    { id: 'web.1', host: '127.0.0.1', ports: [31001], state: 'TASK_RUNNING' },
    { id: 'web.2', host: 'localhost', ports: [31002] },
  ];
  return JSON.stringify(app, null, 2);
}

/** `{apps, tasks}`: the tasks of Marathon docs' examples/tasks.json matched to their apps by appId. */
const DUMP = JSON.stringify({
  apps: [
    { id: '/frontend-foosball', portDefinitions: [{ port: 10019, protocol: 'tcp', labels: { VIP_0: '/frontend-foosball:80' } }] },
    { id: '/tools/docker/registry', portDefinitions: [{ port: 5000, protocol: 'tcp' }] },
  ],
  tasks: [
    {
      id: 'frontend-foosball.083be411-5d1f-11e5-88f7-56b91e7a505b',
      host: '10.0.0.4',
      ports: [31292],
      appId: '/frontend-foosball',
      state: 'TASK_RUNNING',
      servicePorts: [10019],
    },
    {
      id: 'tools_docker_registry.002b4d28-46b9-11e5-b731-525400cce7ed',
      host: '10.0.0.2',
      ports: [31721],
      appId: '/tools/docker/registry',
      state: 'TASK_RUNNING',
      servicePorts: [5000],
    },
  ],
});

const LIST = JSON.stringify([
  { id: 'listed', portDefinitions: [{ port: 0 }], tasks: [{ id: 'listed.1', host: '10.0.0.9', ports: [31555] }] },
]);

interface Harness {
  dir: string;
  p: AppsDirProvider;
  snaps: SnapshotRecorder;
  logs: LogRecorder;
}

async function harness(t: Test, files: Record<string, string>): Promise<Harness> {
  const dir = t.testdir(files);
  const snaps = new SnapshotRecorder();
  const logs = new LogRecorder();
  const p = new AppsDirProvider({ dir, debounceMs: 10, logger: createLogger({ level: 'debug', destination: logs }), groups: ['external'] });
  t.teardown(() => p.stop());
  await p.start(snaps.sink);
  return { dir, p, snaps, logs };
}

const names = (s: Snapshot | undefined): string[] => Object.keys(s?.services ?? {}).sort();

t.test('good files serve; a bad one is reported with its path and reason', async (t) => {
  const h = await harness(t, {
    'web.json': webFile(),
    'dump.json': DUMP,
    'list.json': LIST,
    'broken.json': '{"id": "/broken",,\n}',
    'README.txt': 'not an app',
  });
  t.equal(h.snaps.count, 1);
  const s = h.snaps.items[0];
  t.same(names(s), ['frontend-foosball-0', 'listed-0', 'registry-docker-tools-0', 'web-0']);
  t.same(
    s?.services['web-0']?.endpoints.map((e) => [e.address, e.port, e.health, e.task]),
    [
      ['127.0.0.1', 31001, 'unknown', 'web'],
      ['127.0.0.1', 31002, 'unknown', 'web'],
    ],
    'no results: served, active checks decide; "localhost" resolved',
  );
  t.same(s?.services['web-0']?.health, {
    expectStatus: [200, 399],
    intervalMs: 20_000,
    timeoutMs: 20_000,
    rise: 2,
    fall: 4,
    httpPath: '/',
  });
  t.same(s?.services['web-0']?.vips, [{ address: '192.168.0.1', port: 80, protocol: 'tcp' }]);
  t.same(
    s?.routes.map((r) => [r.entrypoint, r.host]),
    [
      ['web', 'web.example.test'],
      ['websecure', 'web.example.test'],
      ['marathon-10019', '*'],
    ],
  );
  t.same(s?.services['frontend-foosball-0']?.vips, [{ name: 'frontend-foosball', port: 80, protocol: 'tcp' }]);
  t.same(
    s?.services['registry-docker-tools-0']?.endpoints.map((e) => [e.address, e.port, e.task]),
    [['10.0.0.2', 31721, 'registry.docker.tools']],
  );

  const st = h.p.status();
  t.equal(st.state, 'degraded');
  const broken = join(h.dir, 'broken.json');
  t.match(st.lastError, new RegExp(`${broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON: .*line 1, column 1[0-9]`));
  t.match(st.details, { dir: h.dir, files: 4, apps: 4, errors: [{ file: broken }] });
  await h.logs.message('broken.json', 0);
});

t.test('a fixed file is picked up; a broken good file keeps its last good content; a deleted one leaves', async (t) => {
  const h = await harness(t, { 'web.json': webFile(), 'list.json': LIST, 'broken.json': '{' });
  t.same(names(h.snaps.items[0]), ['listed-0', 'web-0']);

  await writeFile(
    join(h.dir, 'broken.json'),
    JSON.stringify({ id: '/fixed', portDefinitions: [{ port: 0 }], tasks: [{ host: '10.0.0.8', ports: [31888] }] }),
  );
  const fixed = await h.snaps.next(1);
  t.same(names(fixed), ['fixed-0', 'listed-0', 'web-0']);
  t.equal(h.p.status().state, 'ok');
  t.equal(h.p.status().lastError, undefined);

  const from = h.logs.count;
  await writeFile(join(h.dir, 'web.json'), '{"id": "/web", "tasks": 5}');
  await h.logs.message('"tasks" must be an array', from);
  t.equal(h.snaps.count, 2, 'nothing sent: its last good content still serves');
  t.equal(h.p.status().state, 'degraded');
  t.match(h.p.status().lastError, /web\.json: "tasks" must be an array of Marathon tasks \(serving its last good content\)/);

  // An atomic save (write a temp file, rename it over) of a good version.
  await writeFile(join(h.dir, '.web.json.tmp'), webFile().replace('web.example.test', 'www.example.test'));
  await rename(join(h.dir, '.web.json.tmp'), join(h.dir, 'web.json'));
  const saved = await h.snaps.next(2);
  t.same(
    saved.routes.filter((r) => r.entrypoint === 'web').map((r) => r.host),
    ['www.example.test'],
  );

  await rm(join(h.dir, 'list.json'));
  const gone = await h.snaps.next(3);
  t.same(names(gone), ['fixed-0', 'web-0']);
});

t.test('one app id in two files: the first file wins, with a warning', async (t) => {
  const h = await harness(t, { 'a.json': LIST, 'b.json': LIST.replace('31555', '31666') });
  t.same(
    h.snaps.items[0]?.services['listed-0']?.endpoints.map((e) => e.port),
    [31555],
  );
  const w = h.p.status().details?.warnings as Array<{ app: string; message: string }>;
  t.match(w, [{ app: '/listed', message: /defined in .*a\.json and again in .*b\.json; .*a\.json is used/ }]);
});

t.test('a missing directory: an empty feed, not an error (the feed is on by default)', async (t) => {
  const base = t.testdir({});
  const snaps = new SnapshotRecorder();
  const p = new AppsDirProvider({ dir: join(base, 'apps'), debounceMs: 10 });
  t.teardown(() => p.stop());
  await p.start(snaps.sink);
  t.same(snaps.items[0], { provider: 'marathon-apps', services: {}, routes: [], entrypoints: {} });
  t.equal(p.status().state, 'ok');
  t.equal(p.status().lastError, undefined);
  t.match(p.status().details, { exists: false, apps: 0 });
});

t.test('config/examples/apps: the documented example serves what its README says', async (t) => {
  const snaps = new SnapshotRecorder();
  const p = new AppsDirProvider({ dir: join(__dirname, '..', '..', '..', 'config', 'examples', 'apps') });
  t.teardown(() => p.stop());
  await p.start(snaps.sink);
  const s = snaps.items[0];
  t.equal(p.status().state, 'ok');
  t.same(names(s), ['web-shop-0']);
  const svc = s?.services['web-shop-0'];
  t.equal(svc?.endpoints[0]?.task, 'web.shop');
  t.same(svc?.vips, [{ name: 'shopweb', port: 80, protocol: 'tcp' }], 'the VIP label; the http service port is an entrypoint, not a VIP');
  t.equal(s?.entrypoints['marathon-10080']?.listen, '127.0.0.1:10080');
  t.same(svc?.balance, { algorithm: 'leastconn' });
  t.same(
    s?.routes.map((r) => [r.entrypoint, r.host, r.redirectToHttps ?? false]),
    [
      ['web', 'shop.example.test', true],
      ['websecure', 'shop.example.test', false],
      ['web', 'www.shop.example.test', true],
      ['websecure', 'www.shop.example.test', false],
      ['marathon-10080', '*', false],
    ],
  );
});

t.test('parseAppsFile: what is refused, and why', async (t) => {
  t.match(parseAppsFile('7'), /expected a Marathon app/);
  t.match(parseAppsFile('{"apps": [{"cmd": "x"}]}'), /apps\[0\]: "id" is missing or empty/);
  t.match(parseAppsFile('[{"id": "/Bad_Name"}]'), /\[0\]: "id" "\/Bad_Name" is not a Marathon app id/);
  t.match(parseAppsFile('{"id": "/a", "labels": [1]}'), /"labels" must be an object/);
  t.match(
    parseAppsFile('{"apps": [{"id": "/a"}], "tasks": [{"id": "t", "appId": "/b"}]}'),
    /tasks\[0\]: appId "\/b" is not an app of this file/,
  );
  t.match(parseAppsFile('{"apps": [{"id": "/a"}], "tasks": [{"id": "t"}]}'), /tasks\[0\]: a task needs "appId"/);
  const ok = parseAppsFile('{"apps": [{"id": "/a", "tasks": [{"id": "t1"}]}], "tasks": [{"id": "t2", "appId": "a"}]}');
  t.same(typeof ok === 'string' ? ok : ok.apps[0]?.tasks?.map((x) => x.id), ['t1', 't2'], 'embedded and top-level tasks together');
});
