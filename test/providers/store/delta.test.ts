/**
 * What the shared config provider hands over when its sink takes changes: two providers follow one key of a
 * real embedded store, one handing a sink with `change` (deltas after the first snapshot), the other a plain
 * function (whole snapshots). After each push, the deltas applied to a model of the provider's knowledge give
 * the whole snapshot, two real Aggregators (fed `change` and `update`) serve the same table, and a push that
 * changes one service's endpoint is a delta naming that one service. A push that changes nothing hands over
 * nothing.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  SHARED_CONFIG_KEY,
  SHARED_PRIORITY,
  SharedConfigProvider,
  compileSharedConfig,
  type SharedConfigRecord,
} from '../../../src/providers/store/shared.js';
import { EmbeddedStore } from '../../../src/store/embedded.js';
import { Recorder } from '../../helpers/wait.js';
import { Feed, agree, deltaOf, sameObjects } from '../feed.js';

function doc(webPort: number, extra = ''): string {
  return `
services:
  api:
    endpoints: [ { address: 127.0.0.1, port: 9101 } ]
  web:
    endpoints: [ { address: 127.0.0.1, port: ${webPort} }, { address: 127.0.0.2, port: 9200 } ]
  db:
    endpoints: [ { address: 127.0.0.3, port: 5432 } ]
    vips: [ { name: db, port: 5432, protocol: tcp } ]
routes:${extra}
  - { entrypoint: web, host: api.example.test, path: /, service: api }
  - { entrypoint: web, host: web.example.test, path: /, service: web }
`;
}

t.test('pushes are handed over as what they change; deltas and whole snapshots serve one table', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'portico-shared-delta-'));
  const store = await EmbeddedStore.open(dir);
  const pd = new SharedConfigProvider({ store });
  const pw = new SharedConfigProvider({ store });
  const fd = new Feed('shared', SHARED_PRIORITY, true);
  const fw = new Feed('shared', SHARED_PRIORITY, false);
  t.teardown(async () => {
    await pd.stop();
    await pw.stop();
    fd.agg.close();
    fw.agg.close();
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const rd = new Recorder<number>();
  const rw = new Recorder<number>();
  pd.onRevision(rd.push);
  pw.onRevision(rw.push);
  await pd.start(fd.sink);
  await pw.start(fw.sink);
  t.equal(fd.handovers.items[0]?.kind, 'snapshot', 'the first hand-over is whole');

  /** Push `text`; resolves once both providers have taken its revision (handed over or not). */
  const push = async (text: string, what: string): Promise<void> => {
    const rec: SharedConfigRecord = {
      text,
      contentType: 'application/yaml',
      snapshot: compileSharedConfig(text),
      pushedAt: 'now',
      by: 'i-1',
    };
    const e = await store.put(SHARED_CONFIG_KEY, JSON.stringify(rec));
    await rd.until((r) => r === e.revision, 5000, `${what}: revision ${e.revision} (delta feed)`);
    await rw.until((r) => r === e.revision, 5000, `${what}: revision ${e.revision} (whole feed)`);
  };

  let n = fd.count;
  await push(doc(9201), 'first push');
  let d = deltaOf(t, fd.handovers.items[n]!, 'first push');
  t.same(Object.keys(d.upsert ?? {}).sort(), ['api', 'db', 'web']);
  t.same(
    d.upsertRoutes?.map((r) => r.id),
    ['shared/0', 'shared/1'],
    'routes named by their place, as the aggregator names a route without an id',
  );
  agree(t, fd, fw, 'first push');
  t.same(
    fd.agg
      .current()
      .routes.map((r) => r.id)
      .sort(),
    ['shared/0', 'shared/1'],
  );

  const before = fw.last();
  n = fd.count;
  await push(doc(9202), 'one endpoint');
  t.equal(fd.count, n + 1, 'one hand-over');
  d = deltaOf(t, fd.handovers.items[n]!, 'one endpoint');
  t.same(Object.keys(d), ['upsert'], 'services only');
  t.same(Object.keys(d.upsert ?? {}), ['web'], 'exactly the service whose endpoint changed');
  agree(t, fd, fw, 'one endpoint');
  if (before?.kind === 'snapshot' && fw.last()?.kind === 'snapshot')
    sameObjects(t, before.snapshot, (fw.last() as { snapshot: typeof before.snapshot }).snapshot, ['web'], 'whole snapshots');

  const nd = fd.count;
  const nw = fw.count;
  await push(doc(9202), 'the same again');
  t.equal(fd.count, nd, 'the same config pushed again: nothing handed over (delta feed)');
  t.equal(fw.count, nw, 'nor a whole snapshot (whole feed)');

  n = fd.count;
  await push(doc(9202, '\n  - { entrypoint: web, host: db.example.test, path: /, service: db }'), 'route in front');
  d = deltaOf(t, fd.handovers.items[n]!, 'route in front');
  t.same(
    d.upsertRoutes?.map((r) => r.id),
    ['shared/0', 'shared/1', 'shared/2'],
    'a route inserted first moves every route after it',
  );
  t.notOk(d.upsert, 'no service changed');
  agree(t, fd, fw, 'route in front');

  n = fd.count;
  await push(`${doc(9202)}entrypoints:\n  admin: { listen: "127.0.0.1:18181" }\n`, 'entrypoint');
  d = deltaOf(t, fd.handovers.items[n]!, 'entrypoint');
  t.same(Object.keys(d.entrypoints ?? {}), ['admin'], 'the entrypoints, whole');
  t.same(d.removeRoutes, ['shared/2'], 'the route gone');
  agree(t, fd, fw, 'entrypoint');

  n = fd.count;
  await store.delete(SHARED_CONFIG_KEY);
  await fd.next(n, 'withdrawn');
  await fw.handovers.until((h) => h.kind === 'snapshot' && Object.keys(h.snapshot.services).length === 0, 5000, 'withdrawn (whole)');
  d = deltaOf(t, fd.handovers.items[n]!, 'withdrawn');
  t.same(d.remove?.sort(), ['api', 'db', 'web']);
  t.same(d.removeRoutes?.sort(), ['shared/0', 'shared/1']);
  t.same(d.entrypoints, {});
  agree(t, fd, fw, 'withdrawn');
});
