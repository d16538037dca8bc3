/**
 * End to end: the real `portico up` process with a config that routes two hosts to two backends, then
 * an edit that adds a third route, served once its table version is published.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runPortico } from '../../helpers/portico.js';
import { freePort, get, startBackend } from '../helpers.js';

const config = (port: number, backends: Array<[string, number]>) => `
data: ./data
store: embedded
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
entrypoints:
  web: { listen: 127.0.0.1:${port} }
services:
${backends.map(([name, p]) => `  ${name}:\n    framework: marathon\n    endpoints:\n      - { address: 127.0.0.1, port: ${p} }`).join('\n')}
routes:
${backends.map(([name]) => `  - { entrypoint: web, host: ${name}.example.test, path: /, service: ${name} }`).join('\n')}
`;

t.test('portico up routes two hosts; a config edit adds a third route', async (t) => {
  const one = await startBackend(t, 'one');
  const two = await startBackend(t, 'two');
  const three = await startBackend(t, 'three');
  const port = await freePort();
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(
    cfg,
    config(port, [
      ['one', one.port],
      ['two', two.port],
    ]),
  );
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
  t.ok(
    p.logs.some((l) => l.msg === 'l7: listening' && l.listen === `127.0.0.1:${port}`),
    'the web entrypoint listens on its port',
  );

  for (const [host, be] of [
    ['one.example.test', one],
    ['two.example.test', two],
  ] as const) {
    const r = await get(port, host, '/path');
    t.equal(r.status, 200, `${host}: 200`);
    t.equal(r.header('x-backend'), be.name, `${host}: answered by ${be.name}`);
    t.equal(be.seen('/path').length, 1);
  }
  t.equal((await get(port, 'three.example.test')).status, 404, 'the third host has no route yet');

  const mark = p.logs.length;
  await writeFile(
    cfg,
    config(port, [
      ['one', one.port],
      ['two', two.port],
      ['three', three.port],
    ]),
  );
  // (the version number is not asserted: a save may reach the file watcher as more than one change)
  const published = await p.waitForLog(
    (l) => l.msg === 'routing table published' && l.routes === 3 && (l.version as number) >= 2,
    10_000,
    mark,
  );
  // The served version made from it (the pipeline says `table published` when the planes are in workers,
  // which say `table served` once all of them apply it).
  const pub = await p.waitForLog(
    (l) => (l.msg === 'table published' || l.msg === 'table served') && (l.built as number) >= (published.version as number),
    10_000,
    mark,
  );
  await p.waitForLog((l) => l.msg === 'table served' && (l.version as number) >= (pub.version as number), 10_000, mark);
  const r3 = await get(port, 'three.example.test', '/new');
  t.equal(r3.status, 200, 'the new route is served once its version is served');
  t.equal(r3.header('x-backend'), 'three');
  t.equal((await get(port, 'one.example.test', '/still')).header('x-backend'), 'one', 'the old routes still work');
  const access = await p.waitForLog((l) => l.component === 'access' && l.host === 'three.example.test' && l.path === '/new', 5000);
  t.equal(access.status, 200, 'the access log has the request');
  t.match(access.endpoint, `127.0.0.1:${three.port}`, 'and the endpoint that served it');

  p.kill('SIGTERM');
  t.equal(await p.waitForExit(15_000), 0, 'exits 0 on SIGTERM');
});
