/**
 * The fast path (js-yaml) and the position-tracking path (`yaml`) read every document to the same config,
 * or refuse it with the same issues at the same positions: over the shipped files, a generated file of
 * 10,000 services, and the YAML the two parsers could read differently (scalars, merge keys, duplicate
 * keys, quoted IPv6 addresses, octal-looking numbers, tags, directives).
 */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { load } from 'js-yaml';
import t from 'tap';
import type { Test } from 'tap';
import { parseDocument } from 'yaml';
import { parseConfigText, readConfigValue } from '../../src/config/index.js';
import type { PorticoConfig } from '../../src/config/index.js';
import { checkConfigLimits } from '../../src/config/limits.js';
import { FAST_LOAD_OPTIONS } from '../../src/config/load.js';
import { ValidationError, type ValidationIssue } from '../../src/model/errors.js';
import { bigConfigYaml } from './big.js';
import { yaml } from './helpers.js';

const root = resolve(__dirname, '../..');

type Outcome = { config: PorticoConfig } | { issues: ValidationIssue[] };

function read(text: string, parser: 'fast' | 'positions'): Outcome {
  try {
    return { config: parseConfigText(text, { file: 'test.yaml', baseDir: '/etc/portico', parser }) };
  } catch (err) {
    if (err instanceof ValidationError) return { issues: err.issues };
    throw err;
  }
}

/** Both paths give the same outcome; returns it. */
function bothAlike(t: Test, text: string, what: string): Outcome {
  const fast = read(text, 'fast');
  const positions = read(text, 'positions');
  t.ok(isDeepStrictEqual(fast, positions), `${what}: both paths alike`);
  if (!isDeepStrictEqual(fast, positions)) t.same(fast, positions, what); // show the difference
  return fast;
}

/** What `yaml` reads a document to, as plain JS. */
function yamlValue(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, merge: true, prettyErrors: false });
  if (doc.errors.length) throw new Error(`yaml refuses ${JSON.stringify(text)}: ${doc.errors[0]?.message}`);
  return doc.toJS({ maxAliasCount: -1 });
}

t.test('the shipped files: the same config on both paths, the same plain value from both parsers', async (t) => {
  const dir = join(root, 'config/examples');
  const files = [
    join(root, 'config/portico.yaml'),
    ...readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .map((f) => join(dir, f)),
  ];
  t.ok(files.length >= 3, `${files.length} files`);
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    t.equal(checkConfigLimits(text).positionsOnly, undefined, `${file}: the fast parser reads it`);
    t.same(load(text, FAST_LOAD_OPTIONS), yamlValue(text), `${file}: js-yaml reads what yaml reads`);
    const outcome = bothAlike(t, text, file);
    t.ok('config' in outcome, `${file} loads`);
  }
});

t.test('a generated file of 10,000 services and 100,000 endpoints: the same config on both paths', async (t) => {
  t.setTimeout(300_000); // the position-tracking parser takes seconds on this file; tap's default is 30 s
  const text = bigConfigYaml(10_000, 10);
  t.equal(checkConfigLimits(text).positionsOnly, undefined, 'the fast parser reads it');
  const fast = parseConfigText(text);
  t.equal(Object.keys(fast.services).length, 10_000);
  t.equal(
    Object.values(fast.services).reduce((n, s) => n + s.endpoints.length, 0),
    100_000,
  );
  t.equal(fast.services.app5?.endpoints[9]?.address, 'fd00::3b', 'a quoted IPv6 address ("fd00::0:3b"), normalised');
  t.ok(isDeepStrictEqual(fast, parseConfigText(text, { parser: 'positions' })), 'both paths read the same config');
});

t.test('an issue found on the fast path is explained at the line and column the positions path gives', async (t) => {
  // One bad port on the last endpoint of a generated file (1,000 services: the explaining costs a full
  // read by yaml, which the file above already measured).
  const text = bigConfigYaml(1_000, 10);
  const at = text.lastIndexOf('port: 8009');
  const broken = `${text.slice(0, at)}port: 70000${text.slice(at + 'port: 8009'.length)}`;
  const fastIssues = read(broken, 'fast');
  t.same(fastIssues, {
    issues: [
      {
        path: 'services.app999.endpoints[9].port',
        message: 'must be 1..65535 (got 70000)',
        line: text.slice(0, at).split('\n').length,
        column: at - text.lastIndexOf('\n', at) + 'port: '.length,
      },
    ],
  });
  t.ok(isDeepStrictEqual(fastIssues, read(broken, 'positions')), 'the positions path reports the same');
});

t.test('scalars: js-yaml, as the fast path sets it up, reads each spelling as yaml does', async (t) => {
  // prettier-ignore
  const spellings = [
    '0755', '0o755', '0o8', '0x1F', '0x1f', '-0x1F', '+0o7', '0b101', '1_000', '+12', '-0', '007', '1e3', '1E3', '1.5e-3', '1.',
    '.5', '+.5', '01.5', '.inf', '-.Inf', '+.INF', '.nan', '.NaN', 'yes', 'no', 'on', 'off', 'y', 'True', 'TRUE', 'tRue',
    'false', '~', 'null', 'Null', 'NULL', 'nULL', '', '2001-12-14', '2001-12-14T21:59:43Z', '12:30:00', '1:20', '::1',
    'fd00::1', '"fd00::1"', "'fd00::1'", '"[::1]:80"', '10.0.0.1', '1.2.3', '123456789012345678901234567890',
    '1e400', '0x', '0o', '-1', '.', '=', '<<', '"<<"', '!!str 0755', '!!int "12"', '!!float .5', '!!null ""', '!!bool true',
    '"\\x41\\u00e9\\U0001F600\\t\\/"', "'it''s'", '"a\\\n  b"', '|\n  x\n  y\n', '>-\n  x\n  y\n\n', 'x #c', 'x#c', 'x:y',
  ];
  for (const s of spellings) {
    const text = `v: ${s}\n`;
    let fast: unknown;
    try {
      fast = load(text, FAST_LOAD_OPTIONS);
    } catch (err) {
      t.fail(`js-yaml refuses ${JSON.stringify(text)}: ${(err as Error).message}`);
      continue;
    }
    t.ok(isDeepStrictEqual(fast, yamlValue(text)), `${JSON.stringify(s)}: ${JSON.stringify(fast)}`);
  }
});

t.test('merge keys: the same values on both paths, explicit keys winning and the first merge source first', async (t) => {
  const text = yaml`
    services:
      base: &base { framework: one, balance: p2c, labels: { a: x } }
      other: &other { framework: two, balance: leastconn, labels: { b: y } }
      merged: { <<: *base, balance: roundrobin }
      before: { balance: roundrobin, <<: *base }
      both: { <<: [*other, *base] }
      block:
        <<: *base
        framework: three
  `;
  const outcome = bothAlike(t, text, 'merge keys');
  const s = 'config' in outcome ? outcome.config.services : {};
  t.equal(s.merged?.framework, 'one');
  t.same(s.merged?.balance, { algorithm: 'roundrobin' }, 'an explicit key wins over the merge');
  t.same(s.before?.balance, { algorithm: 'roundrobin' }, 'also when written before the merge');
  t.equal(s.both?.framework, 'two', 'of several sources, the first wins');
  t.same(s.both?.labels, { b: 'y' });
  t.equal(s.block?.framework, 'three');
  t.same(s.block?.labels, { a: 'x' });
  // A quoted "<<" is a key like any other: here an unknown one.
  const quoted = bothAlike(t, 'services:\n  a: { "<<": {} }\n', 'quoted <<');
  t.match(quoted, { issues: [{ path: 'services.a["<<"]', line: 2, message: /unknown key "<<"/ }] });
});

t.test('duplicate keys are errors on both paths, at the same place', async (t) => {
  const text = yaml`
    services:
      web:
        endpoints: []
        endpoints: [ { address: 10.0.0.1, port: 80 } ]
  `;
  t.same(bothAlike(t, text, 'duplicate key'), {
    issues: [
      { path: 'services.web.endpoints', message: 'duplicate key "endpoints" (a key may appear once per mapping)', line: 4, column: 5 },
    ],
  });
  t.match(bothAlike(t, 'data: a\ndata: b\n', 'top-level duplicate'), { issues: [{ path: 'data', line: 2, column: 1 }] });
});

t.test('IPv6 addresses quoted and not, octal-looking and hex numbers: alike on both paths', async (t) => {
  const ok = bothAlike(
    t,
    yaml`
      services:
        web:
          endpoints:
            - { address: "FD00:0:0::1", port: 0x50 }
            - { address: fd00::2, port: 0o17 }
            - { address: '::1', port: 080, weight: 010 }
          labels: { mode: "0755", plain: 0755x }
    `,
    'addresses and numbers',
  );
  const web = 'config' in ok ? ok.config.services.web : undefined;
  t.same(
    web?.endpoints.map((e) => [e.address, e.port, e.weight]),
    [
      ['fd00::1', 80, 1],
      ['fd00::2', 15, 1],
      ['::1', 80, 10],
    ],
  );
  t.same(web?.labels, { mode: '0755', plain: '0755x' });
  // Unquoted, 0755 is the number 755 (YAML 1.2 has no leading-zero octal): a label must be a string.
  t.same(bothAlike(t, 'services:\n  web: { labels: { mode: 0755 } }\n', 'octal-looking label'), {
    issues: [{ path: 'services.web.labels.mode', message: 'must be a string, not number 755', line: 2, column: 26 }],
  });
});

t.test('what only yaml reads as the config means is read by yaml, on both paths', async (t) => {
  // YAML 1.1 by directive: 0755 is octal there (493).
  t.match(bothAlike(t, '%YAML 1.1\n---\ndata: 0755\n', 'YAML 1.1 directive'), { issues: [{ path: 'data', message: /not number 493/ }] });
  // A null key is "" to yaml ("null" to js-yaml): not a valid service name.
  t.match(bothAlike(t, 'services:\n  ~: {}\n', 'null key'), { issues: [{ path: 'services[""]', line: 2, message: /not a valid name/ }] });
  t.match(bothAlike(t, 'services:\n  null: {}\n', 'null key, spelt out'), { issues: [{ path: 'services[""]', line: 2 }] });
  // A collection as a key: yaml writes it as YAML, js-yaml joins it.
  t.match(bothAlike(t, 'services:\n  [a, b]: {}\n', 'collection key'), { issues: [{ path: 'services["[ a, b ]"]', line: 2 }] });
  // An unknown tag: an error for js-yaml, a warning for yaml, which reads the value as written.
  const tagged = bothAlike(t, 'data: !custom ./var/portico\n', 'unknown tag');
  t.match(tagged, { config: { data: './var/portico' } });
  // readConfigValue (the shared config's check of its sections) reads these as yaml does too.
  t.same(readConfigValue('services:\n  ~: {}\n'), { services: { '': {} } });
  t.same(readConfigValue('services: [oops\n'), undefined, 'not YAML: undefined (parseConfigText says why)');
});

t.test('syntax errors are explained by yaml, in its words and at its positions, on both paths', async (t) => {
  const rows = [
    'api: { listen: 127.0.0.1:9900\nentrypoints: {}\n',
    'services:\n  web:\n    framework: marathon\n   endpoints: []\n',
    'data: a\n---\ndata: b\n',
    'a: "x\n',
  ];
  for (const text of rows) {
    const outcome = bothAlike(t, text, JSON.stringify(text));
    t.ok(
      'issues' in outcome && outcome.issues.length > 0 && outcome.issues.every((i) => typeof i.line === 'number'),
      'refused, with lines',
    );
  }
});
