/** Request ids made by the engine: version-4 UUID text, and no two alike. */
import t from 'tap';
import { newRequestId } from '../../../src/l7/requestid.js';

t.test('random v4 UUIDs, distinct', async (t) => {
  const seen = new Set<string>();
  const n = 20_000; // many pool refills (256 ids each)
  let bad = 0;
  const nibbles = new Set<string>();
  for (let i = 0; i < n; i++) {
    const id = newRequestId();
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)) bad++;
    seen.add(id);
    nibbles.add(id[0] as string);
  }
  t.equal(bad, 0, 'every id is a version-4, variant-1 UUID in lower-case hex');
  t.equal(seen.size, n, 'no id repeats');
  t.equal(nibbles.size, 16, 'the random part takes every hex digit');
});
