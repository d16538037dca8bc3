import { createHash } from 'node:crypto';
import t from 'tap';
import { fnv1a, MaglevTable } from '../../src/l4/maglev.js';
import { Backend, LeastConnSelector, Member, RoundRobinSelector, ServicePool } from '../../src/l4/pool.js';

/** mulberry32: a seeded PRNG, so a failing property prints a seed that reproduces it. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const names = (n: number, r: () => number) =>
  [
    ...new Set(
      Array.from(
        { length: n * 2 },
        () => `10.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}.${Math.floor(r() * 256)}:${1024 + Math.floor(r() * 60000)}`,
      ),
    ),
  ].slice(0, n);

const table = (ns: string[], size?: number) =>
  new MaglevTable(
    ns.map((n) => ({ name: n, weight: 1, value: n })),
    size,
  );

t.test('every slot is filled and shares are near-perfectly even', async (t) => {
  for (const n of [1, 2, 7, 64, 300]) {
    const shares = table(names(n, rng(n))).shares();
    t.equal(
      shares.reduce((a, b) => a + b, 0),
      65_537,
      `${n} backends: all 65537 slots taken`,
    );
    const min = Math.min(...shares);
    const max = Math.max(...shares);
    t.ok(max - min <= 1, `${n} backends: shares within one slot (${min}..${max})`);
  }
});

t.test('weights give proportional shares; weight 0 never appears', async (t) => {
  const m = new MaglevTable([
    { name: 'a:1', weight: 1, value: 'a' },
    { name: 'b:1', weight: 2, value: 'b' },
    { name: 'c:1', weight: 3, value: 'c' },
    { name: 'd:1', weight: 0, value: 'd' },
  ]);
  const s = Object.fromEntries(m.backends.map((v, i) => [v, m.shares()[i] as number]));
  t.notOk('d' in s, 'weight 0 (draining) takes no slot');
  t.ok(Math.abs((s.b as number) / (s.a as number) - 2) < 0.02, `b ≈ 2×a (${s.b}/${s.a})`);
  t.ok(Math.abs((s.c as number) / (s.a as number) - 3) < 0.02, `c ≈ 3×a (${s.c}/${s.a})`);
  t.same(
    new MaglevTable([
      { name: 'x', weight: 4, value: 1 },
      { name: 'y', weight: 4, value: 2 },
    ]).shares(),
    new MaglevTable([
      { name: 'x', weight: 1, value: 1 },
      { name: 'y', weight: 1, value: 2 },
    ]).shares(),
    'weights are reduced by their gcd',
  );
});

t.test('the table depends on the set, not the order', async (t) => {
  const r = rng(7);
  const ns = names(25, r);
  const a = table(ns);
  const b = table([...ns].reverse());
  let differ = 0;
  for (let i = 0; i < 10_000; i++) {
    const h = Math.floor(r() * 2 ** 32);
    if (a.lookup(h) !== b.lookup(h)) differ++;
  }
  t.equal(differ, 0);
});

t.test('property: removing one of N moves about 1/N of the keys, adding one about 1/(N+1)', async (t) => {
  const seed = Number(process.env.MAGLEV_SEED ?? 20240611);
  const r = rng(seed);
  const K = 20_000;
  for (let trial = 0; trial < 30; trial++) {
    const n = 3 + Math.floor(r() * 98);
    const ns = names(n, r);
    const before = table(ns);
    const gone = ns[Math.floor(r() * n)] as string;
    const after = table(ns.filter((x) => x !== gone));
    let moved = 0;
    let movedOthers = 0;
    for (let i = 0; i < K; i++) {
      const h = Math.floor(r() * 2 ** 32);
      const x = before.lookup(h);
      const y = after.lookup(h);
      if (x !== y) {
        moved++;
        if (x !== gone) movedOthers++;
      }
      if (y === gone) t.fail('a removed backend is still returned');
    }
    // Keys of the removed backend must move (~1/N); everyone else's should stay, up to a little churn.
    if (moved / K > 1 / n + 0.02 || movedOthers / K > 0.02) {
      t.fail(
        `seed ${seed} trial ${trial}: N=${n} moved ${(moved / K).toFixed(4)} (1/N = ${(1 / n).toFixed(4)}), others ${(movedOthers / K).toFixed(4)}`,
      );
    }
    const added = table([...ns, `192.0.2.${trial}:80`]);
    let gained = 0;
    for (let i = 0; i < K; i++) {
      const h = Math.floor(r() * 2 ** 32);
      if (before.lookup(h) !== added.lookup(h)) gained++;
    }
    if (gained / K > 1 / (n + 1) + 0.02) t.fail(`seed ${seed} trial ${trial}: adding one to N=${n} moved ${(gained / K).toFixed(4)}`);
  }
  t.pass(`30 random trials within bounds (seed ${seed})`);
});

t.test('fnv1a spreads similar keys (ports) over the table', async (t) => {
  const m = table(['a:1', 'b:1', 'c:1', 'd:1']);
  const counts = new Map<string, number>();
  for (let port = 40_000; port < 44_000; port++) {
    const v = m.lookup(fnv1a(`127.0.0.1|${port}|127.0.0.1|80|tcp`)) as string;
    counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  for (const [k, c] of counts) t.ok(c > 800 && c < 1200, `${k}: ${c} of 4000`);
});

function members(n: number, weights: number[] = []): { pool: ServicePool; ms: Member[] } {
  const pool = new ServicePool('p', 'maglev', 65_537);
  pool.update(
    Array.from({ length: n }, (_, i) => ({ address: `10.0.0.${i + 1}`, port: 80, weight: weights[i] ?? 1, health: 'healthy' as const })),
    'maglev',
    (a, p) => new Backend(a, p),
  );
  pool.rebuild(Date.now(), () => {});
  return { pool, ms: [...pool.members.values()] };
}

t.test('maglev selector: a retry skips what was tried, deterministically', async (t) => {
  const { pool } = members(4);
  const first = pool.selector.pick(12345, null);
  t.ok(first);
  const second = pool.selector.pick(12345, [first as Member]);
  t.not(second, first, 'the retry goes elsewhere');
  t.equal(pool.selector.pick(12345, [first as Member]), second, 'and to the same place each time');
  const all = [...pool.members.values()];
  t.equal(pool.selector.pick(12345, all), undefined, 'nothing left when all were tried');
});

t.test('pool: rebuilt only when the eligible set changes; draining members leave', async (t) => {
  const { pool } = members(3);
  const sel = pool.selector;
  const drains: Array<[string, boolean]> = [];
  const hook = (m: Member, ok: boolean) => drains.push([m.backend.key, ok]);
  t.notOk(pool.rebuild(Date.now(), hook), 'same set: no rebuild');
  t.equal(pool.selector, sel, 'the Maglev table is kept');
  pool.update(
    [
      { address: '10.0.0.1', port: 80, weight: 1, health: 'healthy' },
      { address: '10.0.0.2', port: 80, weight: 0, health: 'healthy' },
      { address: '10.0.0.3', port: 80, weight: 1, health: 'unknown' },
    ],
    'maglev',
    (a, p) => new Backend(a, p),
  );
  t.ok(pool.rebuild(Date.now(), hook), 'weight 0: rebuilt');
  t.same(drains, [['10.0.0.2:80', false]], 'the weight-0 member is reported draining');
  t.same(
    pool.selector.members.map((m) => m.backend.key),
    ['10.0.0.1:80', '10.0.0.3:80'],
    'unknown health is served',
  );
  pool.update([{ address: '10.0.0.1', port: 80, weight: 1, health: 'healthy' }], 'maglev', (a, p) => new Backend(a, p));
  pool.rebuild(Date.now(), hook);
  t.same(
    pool.selector.members.map((m) => m.backend.key),
    ['10.0.0.1:80'],
  );
  const m3 = pool.members.get('10.0.0.3:80') as Member;
  t.equal(m3.state(Date.now()), 'draining', 'a member that left the table drains');
  m3.active = 1;
  pool.prune();
  t.ok(pool.members.has('10.0.0.3:80'), 'kept while it has a connection');
  m3.active = 0;
  pool.prune();
  t.notOk(pool.members.has('10.0.0.3:80'), 'pruned once it has none');
});

t.test('least connections and weighted round-robin', async (t) => {
  const { ms } = members(3);
  const lc = new LeastConnSelector(ms);
  (ms[0] as Member).backend.active = 5;
  (ms[1] as Member).backend.active = 1;
  (ms[2] as Member).backend.active = 3;
  t.equal(lc.pick(0, null), ms[1], 'fewest open connections');
  t.equal(lc.pick(0, [ms[1] as Member]), ms[2], 'next fewest on retry');

  const w = members(3, [5, 1, 1]).ms;
  const rr = new RoundRobinSelector(w);
  const seq = Array.from({ length: 7 }, () => w.indexOf(rr.pick(0, null) as Member));
  t.same(seq.filter((i) => i === 0).length, 5, 'weights respected over one cycle');
  t.notSame(seq.slice(0, 3), [0, 0, 0], 'smooth: the heavy member is spread out');
  t.same(seq, [0, 0, 1, 0, 2, 0, 0], 'nginx smooth weighted order');
});

t.test('the table is the one earlier versions built (instances of two versions agree on every key)', async (t) => {
  // Fingerprints of tables built by the first implementation (Int32Array slots, probing with a branch).
  const fingerprint = (n: number, size: number): string => {
    const m = new MaglevTable(
      Array.from({ length: n }, (_, i) => {
        const name = `10.0.${i >> 8}.${i & 255}:${8000 + i}`;
        return { name, weight: 1 + (i % 3), value: name };
      }),
      size,
    );
    const h = createHash('sha256');
    for (let s = 0; s < size; s++) h.update(`${m.lookup(s)},`);
    return h.digest('hex').slice(0, 16);
  };
  t.equal(fingerprint(10, 65_537), 'bfc55aff2a2d9015', '10 weighted backends');
  t.equal(fingerprint(300, 65_537), '7ee5d2465ba79d62', '300 (more than a byte per slot holds)');
  t.equal(fingerprint(3, 251), '9f65539c6dcd4b70', 'a small table');
  t.equal(fingerprint(1, 7), '892794b9977d8548', 'one backend owns every slot');
});
