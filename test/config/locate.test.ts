/**
 * Positions in the source (src/config/locate.ts): duplicate keys found in one pass exactly where `yaml`'s
 * own (quadratic) check finds them, and issues located by path in a large mapping.
 */
import t from 'tap';
import { parseDocument } from 'yaml';
import { parseConfigText } from '../../src/config/index.js';
import { duplicateKeys, formatPath } from '../../src/config/locate.js';
import { ValidationError } from '../../src/model/errors.js';

t.test("duplicateKeys finds what yaml's uniqueKeys check finds, at the same offsets", async (t) => {
  const docs = [
    'a: 1\nb: 2\na: 3\n',
    'a: 1\n0x1: 2\n1: 3\n',
    '0: 1\n-0: 2\n',
    '.nan: 1\n.nan: 2\n',
    '1: 1\n"1": 2\n',
    '"a": 1\na: 2\n',
    '~: 1\nnull: 2\n: 3\n',
    'x: &x {a: 1}\ny: &y {b: 2}\nz: {<<: *x, <<: *y}\n',
    'x: &x {a: 1}\nz:\n  <<: *x\n  <<: {c: 3}\n  c: 4\n  c: 5\n',
    'list:\n  - {a: 1, a: 2}\n  - a: 1\n    b: 2\n    a: 3\n',
    '? {k: 1, k: 2}\n: v\n',
    '? [a]\n: 1\n? [a]\n: 2\n',
    'a: &m {p: 1, p: 2}\nb: *m\n',
    'deep: {a: {b: {c: 1, c: 2}}, a2: [{d: 1}, {d: 1, d: 2}]}\n',
    'true: 1\nTrue: 2\n1.0: 3\n1: 4\n',
  ];
  for (const text of docs) {
    const reference = parseDocument(text, { uniqueKeys: true, merge: true });
    const want = reference.errors.filter((e) => e.code === 'DUPLICATE_KEY').map((e) => e.pos[0]);
    const got = duplicateKeys(parseDocument(text, { uniqueKeys: false, merge: true })).map((d) => d.offset);
    t.same(got, want, JSON.stringify(text));
  }
  const paths = duplicateKeys(parseDocument('deep: {a: {b: {c: 1, c: 2}}, a2: [{d: 1}, {d: 1, d: 2}]}\n', { uniqueKeys: false }));
  t.same(
    paths.map((d) => formatPath(d.path)),
    ['deep.a.b.c', 'deep.a2[1].d'],
  );
});

t.test('many issues under one large mapping are each placed on their own line', async (t) => {
  const n = 5000;
  const lines = ['services:'];
  for (let i = 0; i < n; i++) lines.push(`  s${i}: { framework: marathon, bogus${i}: 1 }`);
  const err = t.throws(() => parseConfigText(`${lines.join('\n')}\n`, { file: 'many.yaml' })) as ValidationError;
  t.type(err, ValidationError);
  t.equal(err.issues.length, n);
  t.ok(
    err.issues.every(
      (issue, i) =>
        issue.path === `services.s${i}.bogus${i}` && issue.line === i + 2 && issue.column === (lines[i + 1] as string).indexOf('bogus') + 1,
    ),
    'each at its key',
  );
});
