/**
 * The session-keys manager on real stores (embedded, and a private redis-server): instances agree on one
 * record, rotation runs once per due time under an injected clock, the previous key stays for its grace
 * and then goes, a deleted or unreadable record is written back, one sealed under another master key is
 * left alone, and no key byte reaches a log line or a serialised object.
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import pino from 'pino';
import t from 'tap';
import type { Test } from 'tap';
import { SealedBox } from '../../src/pki/crypto.js';
import { openPki } from '../../src/pki/index.js';
import {
  SESSION_KEYS_KEY,
  SESSION_KEY_DEFAULTS,
  SessionKeyManager,
  type SessionKeyOptions,
  type SessionKeys,
} from '../../src/pki/session-keys.js';
import { RedisStore } from '../../src/store/redis.js';
import type { Store } from '../../src/store/types.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';
import { Recorder, waitFor, withTimeout } from '../helpers/wait.js';
import { FakeClock } from './fake-clock.js';
import { openStore, tmpDir } from './helpers.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Log lines as text, to look for key bytes in. */
function logCapture() {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  return { logger, lines };
}

interface Instance {
  m: SessionKeyManager;
  rec: Recorder<SessionKeys>;
  lines: string[];
}

function instance(t: Test, store: Store, box: SealedBox, clock: FakeClock, extra: Partial<SessionKeyOptions> = {}): Instance {
  const { logger, lines } = logCapture();
  const m = new SessionKeyManager({ store, box, clock, logger, ...extra });
  const rec = new Recorder<SessionKeys>();
  m.onChange(rec.push);
  t.teardown(() => m.close());
  return { m, rec, lines };
}

/** Every encoding a key could be logged in. */
function encodings(keys: SessionKeys): string[] {
  const out: string[] = [];
  for (const k of [keys.sticky, keys.tickets])
    for (const b of [k.current, k.previous]) if (b) out.push(b.toString('hex'), b.toString('base64'), b.toString('base64url'));
  return out;
}

function assertNoKeys(t: Test, text: string, keys: SessionKeys[], what: string): void {
  const leaked = keys.flatMap(encodings).filter((e) => text.includes(e));
  t.same(leaked, [], `${what}: no key bytes`);
}

async function storedRecord(store: Store): Promise<Record<string, any>> {
  const e = await store.get(SESSION_KEYS_KEY);
  if (!e) throw new Error('no session keys record');
  return JSON.parse(e.value.toString('utf8')) as Record<string, any>;
}

async function agreeAndRotate(t: Test, stores: [Store, Store]): Promise<void> {
  const box = new SealedBox(randomBytes(32));
  const clock = new FakeClock();
  const a = instance(t, stores[0], box, clock);
  const b = instance(t, stores[1], box, clock);
  // Started together: one creates the record (cas on "absent"), both end up with its keys.
  await Promise.all([a.m.start(), b.m.start()]);
  const [ka, kb] = [a.m.keys()!, b.m.keys()!];
  t.equal(ka.revision, kb.revision, 'both hold the same revision');
  t.ok(ka.sticky.current.equals(kb.sticky.current), 'one sticky secret');
  t.ok(ka.tickets.current.equals(kb.tickets.current), 'one ticket key');
  t.equal(ka.tickets.current.length, 48, 'ticket keys are 48 bytes (setTicketKeys layout)');
  t.equal(ka.sticky.current.length, 32);
  t.equal(ka.tickets.generation, 1);
  t.equal(ka.tickets.previous, undefined);
  const raw = (await stores[0].get(SESSION_KEYS_KEY))!.value.toString();
  assertNoKeys(t, raw, [ka], 'the stored record (sealed)');

  // 12 h later both timers fire; one rotation is written, both follow it.
  clock.advance(SESSION_KEY_DEFAULTS.ticketRotateMs);
  const [ra, rb] = await Promise.all([
    a.rec.until((k) => k.tickets.generation === 2, 10_000, 'A: tickets generation 2'),
    b.rec.until((k) => k.tickets.generation === 2, 10_000, 'B: tickets generation 2'),
  ]);
  t.ok(ra.tickets.current.equals(rb.tickets.current), 'the same new ticket key on both');
  t.notOk(ra.tickets.current.equals(ka.tickets.current), 'a new key');
  t.ok(ra.tickets.previous?.equals(ka.tickets.current), 'the previous key is kept (tickets under it resume)');
  t.ok(rb.tickets.previous?.equals(ka.tickets.current));
  t.ok(ra.sticky.current.equals(ka.sticky.current), 'the sticky secret is not due');
  t.equal(ra.sticky.generation, 1);
  const afterRotation = await storedRecord(stores[0]);
  t.equal(afterRotation.tickets.generation, 2, 'one rotation written, not one per instance');

  // The grace (1 h) ends: the previous ticket key is retired everywhere.
  clock.advance(SESSION_KEY_DEFAULTS.ticketGraceMs);
  const [ga, gb] = await Promise.all([
    a.rec.until((k) => k.tickets.generation === 2 && k.tickets.previous === undefined, 10_000, 'A: previous ticket key retired'),
    b.rec.until((k) => k.tickets.generation === 2 && k.tickets.previous === undefined, 10_000, 'B: previous ticket key retired'),
  ]);
  t.ok(ga.tickets.current.equals(ra.tickets.current), 'the current key stays');
  t.ok(gb.tickets.current.equals(ra.tickets.current));

  // 30 days: the sticky secret rotates too, its previous one accepted for the next 30 days.
  clock.advance(SESSION_KEY_DEFAULTS.stickyRotateMs);
  const sa = await a.rec.until((k) => k.sticky.generation === 2, 10_000, 'A: sticky generation 2');
  const sb = await b.rec.until((k) => k.sticky.generation === 2, 10_000, 'B: sticky generation 2');
  t.ok(sa.sticky.previous?.equals(ka.sticky.current), 'cookies under the previous secret still route');
  t.ok(sa.sticky.current.equals(sb.sticky.current));
  t.ok(sa.tickets.generation >= 3, 'ticket keys went on rotating meanwhile');
  t.equal((await storedRecord(stores[0])).sticky.generation, 2, 'one sticky rotation written');

  const all = [ka, ra, ga, sa, sb, ...a.rec.items, ...b.rec.items];
  assertNoKeys(t, [...a.lines, ...b.lines].join('\n'), all, 'the logs');
  t.ok(
    a.lines.concat(b.lines).some((l) => /"msg":"session keys written"/.test(l)),
    'writes are logged (generations, not keys)',
  );
  assertNoKeys(t, JSON.stringify(sa) + inspect(sa) + inspect(sa.tickets) + JSON.stringify(sa.sticky), all, 'JSON and inspect of the keys');
  t.equal(clock.pending <= 2, true, 'one timer per manager');
}

t.test('embedded store: two managers agree, rotate once per due time, keep and then retire the previous key', async (t) => {
  const { store } = await openStore(t);
  await agreeAndRotate(t, [store, store]);
});

const skip = redisServerPath() ? false : 'redis-server is not installed';

t.test('Redis store: two managers on two connections agree and rotate together', { skip }, async (t) => {
  const srv = await startRedis();
  t.teardown(() => srv.dispose());
  const open = async (): Promise<Store> => {
    const s = await RedisStore.open(srv.url, { keyPrefix: 'session-keys-test:' });
    t.teardown(() => s.close());
    return s;
  };
  await agreeAndRotate(t, [await open(), await open()]);
});

t.test('a restarted instance reads the same keys; a deleted record is written back with them', async (t) => {
  const { store } = await openStore(t);
  const box = new SealedBox(randomBytes(32));
  const clock = new FakeClock();
  const first = instance(t, store, box, clock);
  await first.m.start();
  const k1 = first.m.keys()!;
  first.m.close();

  clock.advance(HOUR); // not due: a restart is not a rotation
  const again = instance(t, store, box, clock);
  await again.m.start();
  const k2 = again.m.keys()!;
  t.ok(k2.sticky.current.equals(k1.sticky.current), 'same sticky secret after a restart');
  t.ok(k2.tickets.current.equals(k1.tickets.current), 'same ticket key after a restart');
  t.equal(k2.revision, k1.revision, 'nothing was written');

  t.ok(await store.delete(SESSION_KEYS_KEY));
  const restored = await waitForRecord(store);
  t.ok(restored > k1.revision, 'the record is back, as a new revision');
  const reader = instance(t, store, box, clock);
  await reader.m.start();
  t.ok(reader.m.keys()!.sticky.current.equals(k1.sticky.current), 'written back with the keys held, not new ones');
  t.ok(reader.m.keys()!.tickets.current.equals(k1.tickets.current));
  t.equal(again.rec.items.length, 1, 'subscribers heard of no change: the keys are the same');
});

t.test('an unreadable record is replaced; one sealed under another master key is left alone', async (t) => {
  const { store } = await openStore(t);
  const clock = new FakeClock();
  const box = new SealedBox(randomBytes(32));

  await store.put(SESSION_KEYS_KEY, '{"version":1,"tickets":"no"}');
  const fixer = instance(t, store, box, clock);
  await fixer.m.start();
  t.equal(fixer.m.keys()?.tickets.generation, 1, 'new keys replace the junk');
  t.equal((await storedRecord(store)).version, 1);
  const complaint = fixer.lines.find((l) => l.includes('cannot be read; replacing it'));
  t.match(complaint, SESSION_KEYS_KEY, 'the log names the record');
  t.match(complaint, '"reason":"tickets: missing"', 'and says what is wrong with it');
  fixer.m.close();

  // Another instance with another master key: it cannot open the record, and must not overwrite it.
  const before = (await store.get(SESSION_KEYS_KEY))!;
  const stranger = instance(t, store, new SealedBox(randomBytes(32)), clock);
  await stranger.m.start(); // resolves: the store answered, with nothing this instance can take
  const line = await waitForLine(stranger.lines, /cannot be opened here/);
  t.match(line, /another PKI master key/, 'the log says why');
  t.match(line, SESSION_KEYS_KEY);
  await stranger.m.maintain();
  t.equal((await store.get(SESSION_KEYS_KEY))!.revision, before.revision, 'the record is untouched');
  t.equal(stranger.m.keys(), undefined, 'no keys taken: subscribers keep what they have');
  t.equal(stranger.rec.items.length, 0);

  // A newer format is left alone too.
  await store.put(SESSION_KEYS_KEY, '{"version":2}');
  const old = instance(t, store, box, clock);
  await old.m.start();
  t.match(await waitForLine(old.lines, /cannot be opened here/), /format version 2/);
  await old.m.maintain();
  t.equal(JSON.parse((await store.get(SESSION_KEYS_KEY))!.value.toString()).version, 2, 'not overwritten');
});

t.test('options: a negative or non-finite period is refused, naming it', async (t) => {
  const { store } = await openStore(t);
  const box = new SealedBox(randomBytes(32));
  t.throws(() => new SessionKeyManager({ store, box, ticketRotateMs: -1 }), { name: 'RangeError', message: /ticketRotateMs/ });
  t.throws(() => new SessionKeyManager({ store, box, stickyGraceMs: Number.NaN }), { name: 'RangeError', message: /stickyGraceMs/ });
});

t.test('rotation off (0): no due time, no timer, keys never change', async (t) => {
  const { store } = await openStore(t);
  const clock = new FakeClock();
  const i = instance(t, store, new SealedBox(randomBytes(32)), clock, { ticketRotateMs: 0, stickyRotateMs: 0 });
  await i.m.start();
  t.equal(clock.pending, 0, 'nothing scheduled');
  clock.advance(400 * DAY);
  await i.m.maintain();
  t.equal(i.m.keys()?.tickets.generation, 1);
  t.equal(i.m.keys()?.sticky.generation, 1);
  t.equal((await storedRecord(store)).tickets.rotateAt, undefined);
});

t.test('openPki: keys held when it resolves, the same on a second instance; another master key does not hold it up', async (t) => {
  const { store } = await openStore(t);
  const dataDir = await tmpDir(t, 'pki-data');
  const one = await openPki({ store, dataDir, env: {} });
  t.teardown(() => one.close());
  const k = one.sessionKeys.keys();
  t.ok(k, 'keys are held as soon as openPki resolves (embedded store)');
  const two = await openPki({ store, dataDir, env: {} });
  t.teardown(() => two.close());
  t.ok(two.sessionKeys.keys()?.sticky.current.equals(k!.sticky.current), 'a second instance on the same store: the same keys');
  // A master key that cannot open the record: openPki returns at once (the store answered), keys undefined.
  const other = await withTimeout(
    openPki({ store, dataDir, sessionKeysWaitMs: 120_000, env: { PORTICO_PKI_KEY: randomBytes(32).toString('base64') } }),
    10_000,
    'openPki with another master key',
  );
  t.teardown(() => other.close());
  t.equal(other.sessionKeys.keys(), undefined);
});

/** The revision of the record once it exists again (a running manager writes it back). */
async function waitForRecord(store: Store): Promise<number> {
  const rec = new Recorder<number>();
  const w = store.watch(SESSION_KEYS_KEY, (ev) => {
    if (ev.type === 'put') rec.push(ev.entry.revision);
    if (ev.type === 'resync') for (const e of ev.entries) rec.push(e.revision);
  });
  try {
    return await rec.until(() => true, 10_000, 'the session keys record written back');
  } finally {
    w.close();
  }
}

/** The first log line matching `re` (already written or to come). */
function waitForLine(lines: string[], re: RegExp): Promise<string> {
  return waitFor(() => lines.find((l) => re.test(l)), { timeoutMs: 10_000, what: `a log line matching ${re}` });
}
