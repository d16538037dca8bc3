/**
 * End to end: the real `portico up` process, a real config file, the real admin api over HTTP.
 */
import t from 'tap';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runPortico } from '../helpers/portico.js';

const base = (extra = '') => `
data: ./data
store: embedded
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
entrypoints:
  web: { listen: 127.0.0.1:0 }
services:
  web:
    framework: marathon
    endpoints:
      - { address: 127.0.0.1, port: 9001 }
${extra}
routes:
  - { entrypoint: web, host: app.example.test, path: /, service: web }
`;

t.test('portico up: a config edit becomes a new table version on the api', async (t) => {
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, base());
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));

  const upLine = await p.waitForLog((l) => l.msg === 'portico is up');
  const api = upLine.api as string;
  t.match(api, /^http:\/\/127\.0\.0\.1:\d+$/);
  const tokenFile = path.join(dir, 'data', 'api-token');
  t.equal((await stat(tokenFile)).mode & 0o777, 0o600, 'token file is 0600');
  t.equal((await stat(path.join(dir, 'data'))).mode & 0o777, 0o700, 'data dir is 0700');
  const token = (await readFile(tokenFile, 'utf8')).trim();
  const get = async (p: string, auth = true) => {
    const res = await fetch(`${api}${p}`, { headers: auth ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  t.equal((await get('/healthz', false)).status, 200);
  t.equal((await get('/v1/table', false)).status, 401, 'no token, no table');
  const t1 = await get('/v1/table');
  t.equal(t1.status, 200);
  // Each feed's first snapshot may be a version of its own (the aggregator publishes on the next turn of
  // the event loop, and feeds start one after another); what is served is the file's.
  const v1 = t1.body.version as number;
  t.ok(v1 >= 1 && v1 <= 6, `the first version served (${v1})`);
  t.same(Object.keys(t1.body.services), ['web@file']);

  // An edit: a second endpoint. The new version is visible on the api.
  let mark = p.logs.length;
  await writeFile(cfg, base().replace('port: 9001 }', 'port: 9001 }\n      - { address: "::1", port: 9002 }'));
  await p.waitForLog((l) => l.msg === 'table served' && l.version === v1 + 1, 10_000, mark);
  const t2 = await get('/v1/table');
  t.equal(t2.body.version, v1 + 1);
  t.same(
    t2.body.services['web@file'].endpoints.map((e: any) => e.address),
    ['127.0.0.1', '::1'],
  );
  const diff = await get(`/v1/table/diff?from=${v1}&to=${v1 + 1}`);
  t.same(diff.body.services.changed, ['web@file']);

  // A bad edit (an editor's atomic rename-save): refused with file:line, the last good table keeps serving.
  mark = p.logs.length;
  const tmp = `${cfg}.tmp`;
  await writeFile(tmp, base().replace('port: 9001 }', 'port: 99999 }'));
  await rename(tmp, cfg);
  const refused = await p.waitForLog((l) => l.level >= 50, 10_000, mark);
  t.match(JSON.stringify(refused), /portico\.yaml:\d+/, 'the error names file and line');
  t.match(JSON.stringify(refused), /services\.web\.endpoints\[0\]\.port/);
  const providers = await get('/v1/providers');
  const file = providers.body.providers.find((x: any) => x.name === 'file');
  t.equal(file.state, 'error');
  t.match(file.lastError, /99999|65535/);
  t.equal((await get('/v1/table')).body.version, v1 + 1, 'still serving the last good version');
  t.equal((await get('/readyz', false)).status, 200, 'a refused edit does not make the appliance unready');

  // SIGHUP re-reads the file (here: still the refused one, so it is refused again and nothing changes).
  mark = p.logs.length;
  p.kill('SIGHUP');
  await p.waitForLog((l) => l.msg === 'reloading the config file', 10_000, mark);
  await p.waitForLog((l) => l.component === 'provider' && Array.isArray(l.issues), 10_000, mark);
  t.equal((await get('/v1/table')).body.version, v1 + 1, 'a reload of a bad file changes nothing');

  // Fixed again.
  mark = p.logs.length;
  await writeFile(cfg, base().replace('port: 9001 }', 'port: 9003 }'));
  await p.waitForLog((l) => l.msg === 'table served' && l.version === v1 + 2, 10_000, mark);
  t.equal((await get('/v1/providers')).body.providers.find((x: any) => x.name === 'file').state, 'ok');

  // SIGTERM: graceful stop, exit 0.
  p.kill('SIGTERM');
  t.equal(await p.waitForExit(15_000), 0, 'exits 0 on SIGTERM');
  t.ok(p.logs.some((l) => l.msg === 'stopped'));
});

t.test('portico up: a broken file at start is served from the last good config', async (t) => {
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, base());
  const first = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => first.kill('SIGKILL'));
  await first.waitForLog((l) => l.msg === 'portico is up');
  first.kill('SIGTERM');
  t.equal(await first.waitForExit(), 0);

  await writeFile(cfg, 'services: [this is: not valid');
  const second = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => second.kill('SIGKILL'));
  const upLine = await second.waitForLog((l) => l.msg === 'portico is up');
  t.ok(
    second.logs.some((l) => /last good config/.test(l.msg)),
    'says it is serving the last good config',
  );
  const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
  const res = await fetch(`${upLine.api}/v1/table`, { headers: { authorization: `Bearer ${token}` } });
  const table = (await res.json()) as any;
  t.same(Object.keys(table.services), ['web@file'], 'the last good services are served');
  second.kill('SIGTERM');
  t.equal(await second.waitForExit(), 0);
});

t.test('portico up: a broken file and no last good config refuses to start, naming the file', async (t) => {
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, 'api: { listen: 127.0.0.1:0, bogus: 1 }\n');
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  t.equal(await p.waitForExit(), 1);
  t.match(p.stderr.join('\n'), /portico\.yaml:1/);
  t.match(p.stderr.join('\n'), /bogus/);
});

t.test('portico validate and portico table', async (t) => {
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, base());
  const ok = runPortico(['validate', cfg], { cwd: dir });
  t.equal(await ok.waitForExit(), 0);
  const badFile = path.join(dir, 'bad.yaml');
  await writeFile(badFile, base().replace('port: 9001', 'port: 0'));
  const bad = runPortico(['validate', badFile], { cwd: dir });
  t.equal(await bad.waitForExit(), 1);
  t.match(bad.stderr.join('\n'), /bad\.yaml:\d+.*services\.web\.endpoints\[0\]\.port/);

  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  const upLine = await p.waitForLog((l) => l.msg === 'portico is up');
  const table = runPortico(['table', '--config', cfg, '--api', upLine.api as string], { cwd: dir });
  t.equal(await table.waitForExit(), 0);
  const text = table.logs.map((l) => l.msg).join('\n');
  // The version the api reports at start (1, or 2 when the file's snapshot was published before the
  // shared config's arrived: the aggregator's debounce may fire between the two feeds' starts).
  t.match(text, new RegExp(`routing table version ${upLine.version as number} `));
  t.match(text, /web@file\s+127\.0\.0\.1:9001/);
  p.kill('SIGTERM');
  t.equal(await p.waitForExit(), 0);
});
