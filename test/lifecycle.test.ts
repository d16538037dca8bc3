import t from 'tap';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Lifecycle } from '../src/lifecycle.js';

function recordingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

t.test('closers run newest first, each awaited, once', async (t) => {
  const life = new Lifecycle();
  const order: string[] = [];
  const store = life.add('store', { name: 'store' }, () => order.push('store'));
  t.equal(store.name, 'store', 'add returns the part');
  life.defer('api', async () => {
    await new Promise((r) => setImmediate(r));
    order.push('api');
  });
  life.defer('planes', () => order.push('planes'));
  t.notOk(life.stopped);
  const a = life.stop();
  const b = life.stop();
  t.equal(a, b, 'stop() is idempotent: the same promise');
  t.ok(life.stopped);
  await a;
  t.same(order, ['planes', 'api', 'store']);
  await life.stop();
  t.same(order, ['planes', 'api', 'store'], 'nothing runs twice');
});

t.test('a failing closer is logged and the rest still close', async (t) => {
  const { logger, lines } = recordingLogger();
  const life = new Lifecycle(logger);
  const order: string[] = [];
  life.defer('store', () => order.push('store'));
  life.defer('overlay', () => {
    throw new Error('socket busy');
  });
  life.defer('planes', () => Promise.reject(new Error('drain failed')));
  await life.stop();
  t.same(order, ['store'], 'the store closed although two parts before it failed');
  const errors = lines.filter((l) => l.level === 50);
  t.same(
    errors.map((l) => l.part),
    ['planes', 'overlay'],
  );
});
