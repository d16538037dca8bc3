/**
 * InstanceRegistry against a real embedded store (a temp dir): table-driven rewrites of the record are
 * spaced by `minGapMs`, so a burst of table versions costs a write or two, and the last state is written.
 */
import t from 'tap';
import { InstanceRegistry, INSTANCES_PREFIX, type InstanceState } from '../../src/instances/instances.js';
import { EmbeddedStore } from '../../src/store/embedded/store.js';

const state = (version: number): InstanceState => ({
  api: 'http://127.0.0.1:1',
  table: { version, hash: `h${version}` },
  sharedRevision: 0,
  ready: true,
  degraded: false,
  reasons: [],
  planes: [],
});

t.test('a burst of publishes writes the record once more, with the last state', async (t) => {
  const store = await EmbeddedStore.open(t.testdir());
  t.teardown(() => store.close());
  let version = 1;
  const reg = new InstanceRegistry({ store, id: 'a', describe: () => state(version), minGapMs: 100 });
  await reg.start();
  const first = await store.revision();
  const burst: Array<Promise<void>> = [];
  for (version = 2; version <= 100; version++) burst.push(reg.publish());
  version = 100;
  await Promise.all(burst);
  const writes = (await store.revision()) - first;
  t.ok(writes >= 1 && writes <= 2, `${writes} write(s) for 99 publishes`);
  const rec = JSON.parse(String((await store.get(`${INSTANCES_PREFIX}a`))?.value)) as { table: { version: number } };
  t.equal(rec.table.version, 100, 'the record says the last version');
  await reg.stop();
});

t.test('stop() does not wait out the gap', async (t) => {
  const store = await EmbeddedStore.open(t.testdir());
  t.teardown(() => store.close());
  const reg = new InstanceRegistry({ store, id: 'b', describe: () => state(1), minGapMs: 3_600_000 });
  await reg.start();
  const pending = reg.publish(); // waits for the gap (an hour)
  await reg.stop();
  await pending;
  t.pass('publish settled when stopped');
});
