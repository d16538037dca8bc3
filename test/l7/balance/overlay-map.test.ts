/**
 * OverlayMap against a plain Map: a seeded random history of sets and deletes, every version kept and
 * checked again at the end (a version never sees a later one's changes), folds included.
 */
import t from 'tap';
import { OverlayMap } from '../../../src/l7/balance/index.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Box {
  n: number;
}

function contents(m: ReadonlyMap<string, Box>): Array<[string, number]> {
  return [...m.entries()].map(([k, v]): [string, number] => [k, v.n]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

t.test('every version holds what a plain Map given the same changes holds', async (t) => {
  for (const seed of [1, 2, 3]) {
    const r = rng(seed);
    const keys = Array.from({ length: 400 }, (_, i) => `k${i}`);
    const boxes = new Map<string, Box>();
    const box = (k: string): Box => {
      // Reused objects too: setting a key to the value it has is no change.
      if (r() < 0.3 && boxes.has(k)) return boxes.get(k) as Box;
      const b = { n: Math.floor(r() * 1000) };
      boxes.set(k, b);
      return b;
    };
    let m = OverlayMap.from<Box>(keys.slice(0, 50).map((k) => [k, box(k)]));
    let ref = new Map<string, Box>(m);
    const history: Array<[OverlayMap<Box>, Array<[string, number]>]> = [[m, contents(ref)]];
    for (let step = 0; step < 300; step++) {
      const set: Array<[string, Box]> = [];
      const deleted: string[] = [];
      const n = 1 + Math.floor(r() * (step % 50 === 0 ? 200 : 4));
      for (let i = 0; i < n; i++) {
        const k = keys[Math.floor(r() * keys.length)] as string;
        if (r() < 0.3) deleted.push(k);
        else set.push([k, box(k)]);
      }
      const next = m.with(set, deleted);
      const want = new Map(ref);
      for (const k of deleted) want.delete(k);
      for (const [k, v] of set) want.set(k, v);
      const same = want.size === ref.size && [...want].every(([k, v]) => ref.get(k) === v);
      if (same !== (next === m)) t.fail(`seed ${seed} step ${step}: a new version is made exactly when something differs`);
      m = next;
      ref = want;
      if (m.size !== ref.size) t.fail(`seed ${seed} step ${step}: size ${m.size}, want ${ref.size}`);
      for (const k of keys) {
        if (m.get(k) !== ref.get(k) || m.has(k) !== ref.has(k)) {
          t.fail(`seed ${seed} step ${step}: ${k}`);
          return;
        }
      }
      history.push([m, contents(ref)]);
    }
    history.forEach(([version, want], i) => {
      const got = contents(version);
      if (JSON.stringify(got) !== JSON.stringify(want)) t.fail(`seed ${seed}: version ${i} changed after it was made`);
    });
    t.same(contents(m), contents(ref), `seed ${seed}: the last version iterates what the Map holds`);
    t.equal([...m.keys()].length, m.size);
  }
});

t.test('a small change costs the overlay; a large one folds into a new base', async (t) => {
  const base = OverlayMap.from(Array.from({ length: 10_000 }, (_, i): [string, Box] => [`k${i}`, { n: i }]));
  const one = base.with([['k1', { n: -1 }]], ['k2']);
  t.equal(one.size, 9_999);
  t.equal(one.get('k1')?.n, -1);
  t.equal(one.has('k2'), false);
  t.equal(base.get('k1')?.n, 1, 'the version before is unchanged');
  t.equal(base.has('k2'), true);
  t.equal(one.with([], []), one, 'nothing to change: the same version');
  t.equal(one.with([['k3', one.get('k3') as Box]]), one, 'a key set to what it holds: the same version');
  const back = one.with([['k1', base.get('k1') as Box]]);
  t.equal(back.get('k1'), base.get('k1'), 'set back to the base value');
  const many = Array.from({ length: 2_000 }, (_, i): [string, Box] => [`n${i}`, { n: i }]);
  const big = one.with(many);
  t.equal(big.size, 11_999);
  t.equal(big.get('n1999')?.n, 1999);
  t.equal(big.get('k1')?.n, -1);
  t.equal(big.has('k2'), false);
  t.equal(one.has('n0'), false);
});
