/**
 * The table pipeline between the aggregator and the planes: stages, served versions, subscribers that
 * start late. Real Aggregator, stages written here (a stage is a plain object).
 */
import t from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import { TablePipeline, type TableStage } from '../../src/aggregator/pipeline.js';
import type { RoutingTable } from '../../src/model/types.js';
import { endpoint, entrypoint, service, snapshot } from '../helpers/snapshot.js';

const web = (port = 9001) =>
  snapshot('file', {
    entrypoints: { web: entrypoint('web', '127.0.0.1:8080') },
    services: { web: service([endpoint('127.0.0.1', port)], { name: 'web', vips: [{ name: 'web', port: 80, protocol: 'tcp' }] }) },
    routes: [{ entrypoint: 'web', host: 'app.example.test', path: '/', pathMatch: 'prefix', service: 'web' }],
  });

/** A stage that gives every VIP the address it holds now; `set()` changes it and tells the pipeline. */
function addressStage(first: string): TableStage & { set(ip: string): void; seen: number[] } {
  let ip = first;
  let changed: (() => void) | undefined;
  const seen: number[] = [];
  return {
    name: 'addr',
    seen,
    apply: async (table) => {
      seen.push(table.version);
      await Promise.resolve();
      return { ...table, vips: table.vips.map((v) => ({ ...v, ip })) };
    },
    fingerprint: (table) => table.vips.map((v) => v.ip ?? '').join(','),
    watch: (cb) => {
      changed = cb;
      return () => (changed = undefined);
    },
    set(next: string) {
      ip = next;
      changed?.();
    },
  };
}

function setup(t: { teardown(fn: () => unknown): void }, stages: TableStage[]) {
  const aggregator = new Aggregator({ debounceMs: 0 });
  const pipeline = new TablePipeline({ aggregator, stages });
  t.teardown(() => {
    pipeline.close();
    aggregator.close();
  });
  const served: RoutingTable[] = [];
  pipeline.subscribe((table) => served.push(table));
  return { aggregator, pipeline, served };
}

t.test('what the stages add is served, and the served table is what subscribers get', async (t) => {
  const stage = addressStage('11.0.0.1');
  const { aggregator, pipeline, served } = setup(t, [stage]);
  aggregator.update('file', 100, web());
  const table = await pipeline.flush();
  t.equal(table.version, 1, 'the version of the aggregator table it was made from');
  t.equal(table.vips[0]?.ip, '11.0.0.1');
  t.not(table.hash, aggregator.current().hash, 'the hash covers what the stage added');
  t.same(
    served.map((x) => x.version),
    [1],
  );
  t.equal(pipeline.get(1), table);
  t.ok(Object.isFrozen(table) && Object.isFrozen(table.vips[0]), 'served tables are frozen');
});

t.test('a stage-only change is a new version; the same content is none', async (t) => {
  const stage = addressStage('11.0.0.1');
  const { aggregator, pipeline, served } = setup(t, [stage]);
  aggregator.update('file', 100, web());
  const v1 = await pipeline.flush();

  stage.set('11.0.0.1'); // same address: runs again, serves nothing new
  await pipeline.settled();
  t.equal(pipeline.current(), v1);

  stage.set('11.0.0.9'); // the address moved without any table change
  await pipeline.settled();
  const v2 = pipeline.current();
  t.equal(v2.version, 2, 'a version of its own');
  t.equal(v2.vips[0]?.ip, '11.0.0.9');
  t.equal(pipeline.get(1)?.vips[0]?.ip, '11.0.0.1', 'version 1 still names what it named');
  t.equal(aggregator.current().version, 1, 'the aggregator built nothing new');

  // The next aggregator table cannot take version 2 again: it is served as 3.
  aggregator.update('file', 100, web(9002));
  const v3 = await pipeline.flush();
  t.equal(aggregator.current().version, 2);
  t.equal(v3.version, 3);
  t.same(
    served.map((x) => x.version),
    [1, 2, 3],
  );
  t.same(pipeline.diff(1, 2)?.vips.changed.length, 1, 'the diff shows the VIP whose address changed');
});

t.test('a table overtaken while the stages run is skipped; the latest is served', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const seen: number[] = [];
  const slow: TableStage = {
    name: 'slow',
    apply: async (table) => {
      seen.push(table.version);
      if (table.version === 1) await gate;
      return table;
    },
  };
  const { aggregator, pipeline, served } = setup(t, [slow]);
  aggregator.update('file', 100, web(9001));
  aggregator.flush(); // v1 enters the slow stage
  aggregator.update('file', 100, web(9002));
  aggregator.flush(); // v2 waits
  aggregator.update('file', 100, web(9003));
  aggregator.flush(); // v3 overtakes v2
  release();
  await pipeline.settled();
  t.same(seen, [1, 3], 'v2 never went through the stages');
  t.same(
    served.map((x) => x.version),
    [1, 3],
  );
  t.equal(pipeline.current().services.get('web@file')?.endpoints[0]?.port, 9003);
});

t.test('a late subscriber gets, at once, what was served after the version it started on', async (t) => {
  const { aggregator, pipeline } = setup(t, []);
  aggregator.update('file', 100, web(9001));
  const first = await pipeline.flush();
  aggregator.update('file', 100, web(9002)); // served while "the planes start"
  await pipeline.flush();
  const got: Array<[number, number | undefined]> = [];
  pipeline.subscribe((table, previous) => got.push([table.version, previous?.version]), first.version);
  t.same(got, [[2, 1]], 'handed over without any further change');
  const none: number[] = [];
  pipeline.subscribe((table) => none.push(table.version), pipeline.current().version);
  t.same(none, [], 'nothing to hand over when it started on the current version');
});

t.test('a stage that throws is logged and the table goes on without it', async (t) => {
  const broken: TableStage = {
    name: 'broken',
    apply: () => {
      throw new Error('boom');
    },
  };
  const stage = addressStage('11.0.0.7');
  const { aggregator, pipeline } = setup(t, [broken, stage]);
  aggregator.update('file', 100, web());
  const table = await pipeline.flush();
  t.equal(table.version, 1, 'served anyway');
  t.equal(table.vips[0]?.ip, '11.0.0.7', 'the next stage still ran');
});

t.test('preview: the version it would be served as, and the aggregator diff', async (t) => {
  const stage = addressStage('11.0.0.1');
  const { aggregator, pipeline } = setup(t, [stage]);
  aggregator.update('file', 100, web());
  await pipeline.flush();
  stage.set('11.0.0.2');
  await pipeline.settled(); // served v2, aggregator still v1
  const p = pipeline.preview('file', 100, web(9005));
  t.equal(p.table.version, 3);
  t.same(p.diff.services.changed, ['web@file']);
  t.equal(p.diff.from, 2);
  t.equal(p.diff.to, 3);
  t.equal(pipeline.current().version, 2, 'a preview serves nothing');
});

t.test('a table published while a stage waits on I/O still reaches subscribers with what changed', async (t) => {
  const agg = new Aggregator({ debounceMs: 0 });
  let release: (() => void) | undefined;
  const slow: TableStage = {
    name: 'slow',
    apply: async (table) => {
      if (release === undefined) await new Promise<void>((r) => (release = r));
      return table;
    },
  };
  const pipeline = new TablePipeline({ aggregator: agg, stages: [slow] });
  t.teardown(() => {
    pipeline.close();
    agg.close();
  });
  const snap = (port: number) => snapshot('file', { services: { web: service([endpoint('10.0.0.1', port)], { name: 'web' }) } });
  agg.update('file', 100, snap(1));
  agg.flush();
  const changes: Array<{ version: number; upserted?: readonly string[] }> = [];
  pipeline.subscribe((table, _prev, change) => changes.push({ version: table.version, upserted: change?.upserted }));
  // v1 is in the stage; v2 is published meanwhile.
  while (!release) await new Promise((r) => setImmediate(r));
  agg.update('file', 100, snap(2));
  agg.flush();
  release();
  await pipeline.settled();
  t.same(changes.at(-1), { version: 2, upserted: ['web@file'] }, 'v2 comes with its change, not as a whole table');
});
