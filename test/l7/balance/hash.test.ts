import t from 'tap';
import { ConsistentHash, hash32, UpstreamSet, type Upstream } from '../../../src/l7/balance/index.js';
import type { Balance } from '../../../src/model/types.js';
import { Clock, ctx, ep, options, service, TestContext } from './helpers.js';

const byHeader: Balance = { algorithm: 'hash', hashOn: { kind: 'header', name: 'X-User' } };

function setOf(n: number[], balance: Balance, clock: Clock, prev?: UpstreamSet): UpstreamSet {
  return new UpstreamSet(
    service(
      n.map((i) => ep(i)),
      balance,
    ),
    prev,
    prev?.options ?? options(clock),
  );
}

t.test('hash32 spreads and is stable', async (t) => {
  t.equal(hash32('a'), hash32('a'));
  t.not(hash32('a'), hash32('b'));
  t.equal(hash32(''), hash32(''));
  const buckets = new Array<number>(16).fill(0);
  for (let i = 0; i < 16_000; i++) buckets[hash32(`k${i}`) >>> 28]!++;
  for (const b of buckets) t.ok(b > 800 && b < 1200, `bucket ${b}`);
});

t.test('same key → same upstream; keys spread evenly; header, cookie and ip keys', async (t) => {
  const clock = new Clock();
  const set = setOf([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], byHeader, clock);
  const c = new TestContext();
  const first = new Map<string, Upstream | undefined>();
  for (let i = 0; i < 10_000; i++) first.set(`user-${i}`, set.pick(c.set({ headers: { 'x-user': `user-${i}` } })));
  let changed = 0;
  for (let i = 0; i < 10_000; i++) if (set.pick(c.set({ headers: { 'x-user': `user-${i}` } })) !== first.get(`user-${i}`)) changed++;
  t.equal(changed, 0, 'deterministic');
  const counts = new Map<Upstream | undefined, number>();
  for (const u of first.values()) counts.set(u, (counts.get(u) ?? 0) + 1);
  t.equal(counts.size, 10);
  for (const n of counts.values()) t.ok(n > 700 && n < 1300, `share ${n / 100}%`);
  t.equal(c.cookieReads, 0, 'a header key never reads cookies');

  // a new table with the same endpoints builds the same ring (and another instance would too)
  const again = new UpstreamSet(
    service(
      [10, 9, 8, 7, 6, 5, 4, 3, 2, 1].map((i) => ep(i)),
      byHeader,
    ),
    undefined,
    options(clock),
  );
  let same = 0;
  for (let i = 0; i < 1000; i++) if (again.pick(c.set({ headers: { 'x-user': `user-${i}` } }))?.key === first.get(`user-${i}`)?.key) same++;
  t.equal(same, 1000, 'ring independent of table order and of the instance');

  const byCookie = setOf([1, 2, 3], { algorithm: 'hash', hashOn: { kind: 'cookie', name: 'sid' } }, clock);
  const a = byCookie.pick(c.set({ headers: { cookie: 'theme=dark; sid=abc123' } }));
  for (let i = 0; i < 20; i++) t.equal(byCookie.pick(c.set({ headers: { cookie: `sid=abc123; n=${i}` } })), a);
  const byIp = setOf([1, 2, 3], { algorithm: 'hash', hashOn: { kind: 'ip' } }, clock);
  const ipPick = byIp.pick(ctx({ ip: '192.0.2.7' }));
  for (let i = 0; i < 20; i++) t.equal(byIp.pick(ctx({ ip: '192.0.2.7' })), ipPick);
  const defaultIp = setOf([1, 2, 3], { algorithm: 'hash' }, clock);
  t.equal(defaultIp.pick(ctx({ ip: '192.0.2.7' }))?.key, ipPick?.key, 'hash without hashOn hashes the client IP');
});

t.test('removing 1 of 10 endpoints remaps only the keys it had (~1/10)', async (t) => {
  const clock = new Clock();
  const before = setOf([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], byHeader, clock);
  const after = setOf([1, 2, 3, 4, 6, 7, 8, 9, 10], byHeader, clock, before);
  const c = new TestContext();
  let moved = 0;
  let movedFromOthers = 0;
  const N = 20_000;
  for (let i = 0; i < N; i++) {
    const q = c.set({ headers: { 'x-user': `user-${i}` } });
    const a = before.pick(q);
    const b = after.pick(q);
    if (a !== b) {
      moved++;
      if (a?.key !== '10.0.0.5:8080') movedFromOthers++;
    }
  }
  t.equal(movedFromOthers, 0, 'no key of a remaining endpoint moved');
  t.ok(moved / N > 0.05 && moved / N < 0.15, `moved ${((100 * moved) / N).toFixed(1)}% of keys`);

  // adding it back restores the original mapping exactly
  const restored = setOf([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], byHeader, clock, after);
  let diff = 0;
  for (let i = 0; i < 2000; i++) {
    const q = c.set({ headers: { 'x-user': `user-${i}` } });
    if (restored.pick(q)?.key !== before.pick(q)?.key) diff++;
  }
  t.equal(diff, 0);
});

t.test('unavailable owner: walk on; recover: keys come back; absent key: round-robin', async (t) => {
  const clock = new Clock();
  const set = setOf([1, 2, 3, 4], byHeader, clock);
  const c = new TestContext();
  const owner = set.pick(c.set({ headers: { 'x-user': 'alice' } })) as Upstream;
  owner.setActiveHealthy(false, clock.t);
  const other = set.pick(c.set({ headers: { 'x-user': 'alice' } }));
  t.ok(other && other !== owner, 'goes to the next point');
  t.equal(set.pick(c.set({ headers: { 'x-user': 'alice' } })), other, 'consistently');
  owner.setActiveHealthy(true, clock.t);
  t.equal(set.pick(c.set({ headers: { 'x-user': 'alice' } })), owner, 'back to its owner');
  t.not(set.pick(c.set({ headers: { 'x-user': 'alice' }, exclude: owner })), owner, 'retry excludes');

  const seq = Array.from({ length: 8 }, () => set.pick(c.set({}))?.key);
  t.same(
    seq,
    [...set.all, ...set.all].map((u) => u.key),
    'no key → round-robin',
  );
  t.same(set.pick(c.set({ headers: { 'x-user': '' } })) !== undefined, true, 'empty key → round-robin');

  for (const u of set.all) u.setActiveHealthy(false, clock.t);
  t.equal(set.pick(c.set({ headers: { 'x-user': 'alice' } })), undefined);
  t.equal(set.pick(c.set({})), undefined);
});

t.test('ring size: weights give proportional points, total capped', async (t) => {
  const clock = new Clock();
  const set = new UpstreamSet(service([ep(1, { weight: 1 }), ep(2, { weight: 3 })], byHeader), undefined, options(clock));
  const ring = set.balancer as ConsistentHash;
  t.equal(ring.points.length, 80 + 240, '160 per average weight: 80 and 240');
  const counts = [0, 0];
  const c = new TestContext();
  for (let i = 0; i < 8000; i++) counts[set.all.indexOf(set.pick(c.set({ headers: { 'x-user': `u${i}` } })) as Upstream)]!++;
  t.ok((counts[1] as number) / 8000 > 0.65 && (counts[1] as number) / 8000 < 0.85, `weight 3 of 4 got ${(counts[1] as number) / 80}%`);

  const many = Array.from({ length: 1000 }, (_, i) => ep(`10.1.${i >> 8}.${i & 255}`));
  const big = new UpstreamSet(service(many, byHeader), undefined, options(clock));
  t.ok((big.balancer as ConsistentHash).points.length <= 65_536);
  t.equal(new UpstreamSet(service([], byHeader), undefined, options(clock)).pick(ctx({ headers: { 'x-user': 'a' } })), undefined);
});
