/**
 * The control's side of the workers (WorkerPlanes) against a recording channel: a whole table goes to the
 * workers as a file in the spool directory (its path over IPC), or as JSON text without one; a worker that
 * asks for a table while the whole one is on its way is not sent another; the spool is cleared when the
 * control starts and its files removed when it closes.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { Aggregator } from '../../src/aggregator/index.js';
import type { RoutingTable } from '../../src/model/types.js';
import { silentLogger } from '../../src/telemetry/log.js';
import { createRegistry } from '../../src/telemetry/metrics.js';
import { WorkerPlanes, type SupervisorChannel } from '../../src/workers/host.js';
import { NO_TABLE_YET, type ControlToSupervisor, type SupervisorToControl } from '../../src/workers/messages.js';
import { encodeTable } from '../../src/workers/wire.js';
import { bigSnapshot } from '../helpers/snapshot.js';

function channel(): SupervisorChannel & { sent: ControlToSupervisor[]; deliver(msg: SupervisorToControl): void } {
  const listeners = new Set<(msg: SupervisorToControl) => void>();
  const sent: ControlToSupervisor[] = [];
  return {
    sent,
    send: (msg) => sent.push(msg),
    on: (_event, fn) => listeners.add(fn),
    off: (_event, fn) => listeners.delete(fn),
    deliver: (msg) => {
      for (const fn of [...listeners]) fn(msg);
    },
  };
}

function table(): RoutingTable {
  const agg = new Aggregator({ debounceMs: 0 });
  agg.update('file', 100, bigSnapshot('file', 20, 2));
  const out = agg.flush();
  agg.close();
  return out;
}

function planes(spoolDir: string | undefined, ch: ReturnType<typeof channel>): WorkerPlanes {
  return new WorkerPlanes({
    channel: ch,
    count: 1,
    init: { config: {} as never, logLevel: 'silent' },
    planes: ['l7'],
    logger: silentLogger,
    registry: createRegistry({ defaultMetrics: false }),
    ...(spoolDir !== undefined && { spoolDir }),
  });
}

t.test('a whole table goes as a file of the spool; a worker asking while it is on its way is not sent another', async (t) => {
  const spool = path.join(t.testdir(), 'tables');
  mkdirSync(spool);
  writeFileSync(path.join(spool, 'table-7-leftover.json'), '{}');
  const ch = channel();
  const w = planes(spool, ch);
  t.same(readdirSync(spool), [], 'what a control before left is cleared');
  ch.deliver({ t: 'worker-up', w: 0, pid: 1234 });

  const tbl = table();
  void w.start(tbl);
  const msg = ch.sent.at(-1) as Extract<ControlToSupervisor, { t: 'to-workers' }>;
  t.equal(msg.t, 'to-workers');
  const m = msg.msg as { t: string; file: string; version: number };
  t.equal(m.t, 'table-file');
  t.equal(m.version, tbl.version);
  t.equal(path.dirname(m.file), spool);
  t.same(JSON.parse(readFileSync(m.file, 'utf8')), JSON.parse(JSON.stringify(encodeTable(tbl, undefined, undefined))), 'the whole table');

  const before = ch.sent.length;
  ch.deliver({ t: 'from-worker', w: 0, msg: { t: 'want-table', have: 0, reason: NO_TABLE_YET } });
  t.equal(ch.sent.length, before, 'the one on its way is not sent again');
  ch.deliver({ t: 'from-worker', w: 0, msg: { t: 'want-table', have: 0, reason: 'table file gone' } });
  const again = ch.sent.at(-1) as Extract<ControlToSupervisor, { t: 'to-worker' }>;
  t.match(again, { t: 'to-worker', w: 0, msg: { t: 'table-file', file: m.file } }, 'any other reason: at once, the same file');

  // A worker that comes up is sent it too.
  ch.deliver({ t: 'worker-up', w: 1, pid: 1235 });
  t.match(ch.sent.at(-1), { t: 'to-worker', w: 1, msg: { t: 'table-file', file: m.file } });

  w.close();
  t.notOk(existsSync(m.file), 'its files go when it closes');
});

t.test('without a spool directory (or one not usable) a whole table goes as JSON text over IPC', async (t) => {
  const ch = channel();
  const w = planes(undefined, ch);
  const tbl = table();
  void w.start(tbl);
  const msg = ch.sent.at(-1) as Extract<ControlToSupervisor, { t: 'to-workers-text' }>;
  t.equal(msg.t, 'to-workers-text');
  t.same(JSON.parse(msg.text), JSON.parse(JSON.stringify(encodeTable(tbl, undefined, undefined))));
  w.close();

  const file = path.join(t.testdir(), 'a-file');
  writeFileSync(file, '');
  const ch2 = channel();
  const w2 = planes(path.join(file, 'tables'), ch2); // under a file: cannot be made
  void w2.start(tbl);
  t.equal(ch2.sent.at(-1)?.t, 'to-workers-text');
  w2.close();
});
