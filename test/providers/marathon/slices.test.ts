/** memberElements (src/providers/marathon/slices.ts): each element's bytes, or undefined for what it cannot place. */
import t from 'tap';
import { memberElements } from '../../../src/providers/marathon/slices.js';

const parts = (text: string, key = 'apps'): unknown[] | undefined => {
  const buf = Buffer.from(text);
  return memberElements(buf, key)?.map(([s, e]) => JSON.parse(buf.toString('utf8', s, e)) as unknown);
};

t.test('each element of the member, parsed alone, is what JSON.parse of the whole gives', async (t) => {
  const doc = {
    before: { apps: [{ no: 1 }], s: 'a "quoted" {brace} [bracket] \\ back\\slash' },
    apps: [
      { id: '/a', cmd: 'echo "}" ]', nested: { x: [1, { y: '\\"' }] }, n: -1.5e3, t: true, f: false, z: null },
      {},
      { id: '/b', unicode: 'é ✓ \u0000 \n', empty: '' },
    ],
    after: [1, 2, 'x'],
  };
  for (const text of [JSON.stringify(doc), JSON.stringify(doc, null, 2), ` \n${JSON.stringify(doc, null, '\t')}\r\n`]) {
    t.same(parts(text), doc.apps);
  }
});

t.test('an empty list, and a member named alike inside a value, do not confuse it', async (t) => {
  t.same(parts('{"apps":[]}'), []);
  t.same(parts('{"x":"\\"apps\\":[{}]","apps":[{"a":1}]}'), [{ a: 1 }]);
  t.same(parts('{"appsx":[{"a":1}],"apps":[{"b":2}]}'), [{ b: 2 }]);
});

t.test('what it cannot place answers undefined (the caller parses the whole)', async (t) => {
  for (const text of [
    '',
    '[]',
    '{}',
    '{"other":[{}]}',
    '{"apps":{}}',
    '{"apps":[1]}',
    '{"apps":[{}, "x"]}',
    '{"apps":[{"a":"unterminated}]}',
    '{"apps":[{"a":1}',
    '{"apps":[{"a":1}]',
    '{"apps":[{"a":1}]} trailing',
    '{"apps":[{"a":1}],}',
    '{"apps" [{"a":1}]}',
    '{"apps":[{"a":1}]]}',
  ]) {
    t.equal(memberElements(Buffer.from(text), 'apps'), undefined, JSON.stringify(text));
  }
});
