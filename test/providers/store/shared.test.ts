/**
 * The shared config provider over a real embedded store: what is pushed reaches the sink, a withdrawal
 * empties it, a record it cannot read keeps the last good snapshot, and a pushed document naming a
 * per-instance section is refused with the path.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ValidationError } from '../../../src/model/errors.js';
import type { Snapshot } from '../../../src/model/types.js';
import {
  SHARED_CONFIG_KEY,
  SharedConfigProvider,
  compileSharedConfig,
  type SharedConfigRecord,
} from '../../../src/providers/store/shared.js';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { Recorder } from '../../helpers/wait.js';

const DOC = `
services:
  api:
    endpoints: [ { address: 127.0.0.1, port: 9101 } ]
routes:
  - { entrypoint: web, host: api.example.test, path: /, service: api }
`;

t.test('compileSharedConfig', async (t) => {
  const snap = compileSharedConfig(DOC);
  t.equal(snap.provider, 'shared');
  t.same(Object.keys(snap.services), ['api']);
  t.equal(snap.routes[0]?.host, 'api.example.test');

  let err: unknown;
  try {
    compileSharedConfig(`store: redis://x:1/0\ndata: /tmp\n${DOC}`);
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ValidationError, 'per-instance sections refused');
  t.same(
    (err as ValidationError).issues.map((i) => i.path),
    ['/store', '/data'],
  );
  t.match((err as ValidationError).message, /per-instance setting/);

  err = undefined;
  try {
    compileSharedConfig('services:\n  api:\n    endpoints: [ { address: nope, port: 1 } ]\n');
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ValidationError, 'invalid config refused');
  t.match((err as ValidationError).issues[0]?.path ?? '', /services/);
});

t.test('provider follows the store key', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'portico-shared-'));
  const store = await EmbeddedStore.open(dir);
  t.teardown(async () => {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const provider = new SharedConfigProvider({ store });
  const got = new Recorder<Snapshot>();
  const revisions = new Recorder<number>();
  provider.onRevision(revisions.push);
  await provider.start(got.push);
  t.same(got.items[0], { provider: 'shared', services: {}, routes: [], entrypoints: {} }, 'nothing pushed: empty snapshot');
  t.equal(provider.status().state, 'ok');

  const rec: SharedConfigRecord = {
    text: DOC,
    contentType: 'application/yaml',
    snapshot: compileSharedConfig(DOC),
    pushedAt: new Date().toISOString(),
    by: 'i-1',
  };
  const e = await store.put(SHARED_CONFIG_KEY, JSON.stringify(rec));
  const s = await got.until((x) => 'api' in x.services, 2000, 'pushed snapshot');
  t.equal(s.routes.length, 1);
  t.equal(await revisions.until((r) => r === e.revision, 2000, 'revision'), e.revision);
  t.equal(provider.revision, e.revision);
  t.match(provider.status().details, { revision: e.revision, by: 'i-1' });

  // A neighbour key is not ours.
  await store.put(`${SHARED_CONFIG_KEY}-other`, 'x');
  // A record we cannot read: last good kept, degraded.
  const n = got.items.length;
  await store.put(SHARED_CONFIG_KEY, '{not json');
  await t.resolves(async () => {
    const deadline = Date.now() + 2000;
    while (provider.status().state !== 'degraded' && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  });
  t.equal(provider.status().state, 'degraded');
  t.match(provider.status().lastError, /not a shared config record/);
  t.equal(got.items.length, n, 'nothing sent');

  await store.delete(SHARED_CONFIG_KEY);
  await got.until((x) => Object.keys(x.services).length === 0, 2000, 'withdrawn');
  t.equal(provider.status().state, 'ok');
  await provider.stop();
  t.equal(provider.status().state, 'stopped');
});
