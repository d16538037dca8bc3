/**
 * The pool under a client that leaves: a waiter that gives up leaves the queue at once, and a destroyed
 * connection frees its place at once.
 */
import t from 'tap';
import net from 'node:net';
import { Pool, type PoolWaiter, type UpstreamConn } from '../../../src/l7/pool.js';
import { TimerWheel } from '../../../src/l7/timers.js';

/** A promise the test resolves. */
function gate(): { held: Promise<void>; open: () => void } {
  let open!: () => void;
  const held = new Promise<void>((resolve) => (open = resolve));
  return { held, open };
}

t.test(
  'the pool: a waiter that gives up leaves the queue from any place, and a destroyed connection frees its place at once',
  async (t) => {
    const server = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const wheel = new TimerWheel(50);
    t.teardown(() => wheel.close());
    const port = (server.address() as net.AddressInfo).port;
    const pool = new Pool('127.0.0.1', port, {
      maxConnections: 1,
      maxQueue: 100,
      connectTimeoutMs: 5000,
      idleTimeoutMs: 5000,
      wheel,
      maxHeaderBytes: 16_384,
    });
    t.teardown(() => pool.close());
    const served: number[] = [];
    let conn: UpstreamConn | undefined;
    const connected = gate();
    const last = gate();
    const waiters: PoolWaiter[] = [];
    const waiter = (i: number): PoolWaiter => {
      const w: PoolWaiter = {
        cancelled: false,
        onPoolConnection(c) {
          served.push(i);
          conn = c;
          connected.open();
          if (i === 41) last.open();
        },
        onPoolError(err) {
          t.fail(`waiter ${i}: ${err.message}`);
        },
      };
      waiters[i] = w;
      return w;
    };
    pool.acquire(waiter(0)); // the one connection is made for it
    for (let i = 1; i <= 20; i++) pool.acquire(waiter(i)); // the rest queue
    await connected.held;
    // Ten hand-overs move the queue's head along its ring; then more waiters wrap around its end.
    for (let i = 0; i < 10; i++) pool.release(conn!, true);
    for (let i = 21; i <= 40; i++) pool.acquire(waiter(i));
    t.same(served, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const gone = [11, 25, 32, 40];
    for (const i of gone) t.ok(pool.cancel(waiters[i]!), `waiter ${i} leaves the queue`);
    t.notOk(pool.cancel(waiters[5]!), 'a waiter already served is not in the queue');
    t.notOk(pool.cancel(waiters[25]!), 'nor is one that left');
    for (let i = 0; i < 26; i++) pool.release(conn!, true);
    const expected = Array.from({ length: 41 }, (_, i) => i).filter((i) => !gone.includes(i));
    t.same(served, expected, 'everyone else is served, in order, and the queue is empty');

    // One more waits; the busy connection is destroyed (mid-message): the waiter gets a new one, and
    // the old one's place is free as release() returns (not a turn later, when its close is reported).
    pool.acquire(waiter(41));
    const before = pool.connectsTotal;
    pool.release(conn!, false);
    t.equal(pool.connectsTotal, before + 1, 'a connection for the waiter is being made already');
    t.equal(pool.total, 1, 'and it is the only one counted');
    await last.held;
    t.equal(served.at(-1), 41, 'the waiter has its connection');
    conn!.destroy();
  },
);
