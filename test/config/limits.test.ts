/**
 * The limits a config document is held to before any parser runs (src/config/limits.ts): refused with a
 * ValidationError that names the line, the column and the limit, on both parsers' paths and for every way
 * in (a file, the text the api validates, a pushed shared config).
 */
import { truncate, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { load } from 'js-yaml';
import t from 'tap';
import type { Test } from 'tap';
import { CST, Lexer } from 'yaml';
import { loadConfigFile, parseConfigText, readConfigText, readConfigValue } from '../../src/config/index.js';
import { CONFIG_LIMITS, checkConfigLimits, type ConfigLimits } from '../../src/config/limits.js';
import { FAST_LOAD_OPTIONS, type BoundedLoadOptions } from '../../src/config/load.js';
import { ErrorCodes, ValidationError, type ValidationIssue } from '../../src/model/errors.js';
import { bigConfigYaml } from './big.js';

const PARSERS = ['fast', 'positions'] as const;

/** The ValidationError `fn` throws; fails the test when it throws nothing or something else. */
function refusal(t: Test, fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    t.type(err, ValidationError);
    return err as ValidationError;
  }
  t.fail('expected a ValidationError, but the document was accepted');
  return new ValidationError([]);
}

/** The single issue of a refusal: a limit is reported alone. */
function only(t: Test, err: ValidationError): ValidationIssue {
  t.equal(err.issues.length, 1, 'one issue');
  t.equal(err.code, ErrorCodes.CONFIG_INVALID);
  return err.issues[0] ?? { path: '<none>', message: '' };
}

const NO_LIMITS: ConfigLimits = { maxBytes: 1e12, maxDepth: 1e9, maxEntries: 1e12, maxAnchors: 1e9, maxAliases: 1e9 };

t.test('the nested-bracket bomb is refused at the level that passes the limit, before any parser', async (t) => {
  const bomb = `a: ${'['.repeat(500_000)}${']'.repeat(500_000)}`;
  // `a` is level 1; the 64th bracket is level 65.
  const column = 'a: '.length + 64;
  for (const parser of PARSERS) {
    const issue = only(
      t,
      refusal(t, () => parseConfigText(bomb, { file: 'bomb.yaml', parser })),
    );
    t.same(
      issue,
      { path: '', message: 'nested 65 levels deep here; the limit is 64 (a Portico config nests about 6)', line: 1, column },
      parser,
    );
  }
  const err = refusal(t, () => parseConfigText(bomb, { file: 'bomb.yaml' }));
  t.equal(err.message, `bomb.yaml:1:${column}: nested 65 levels deep here; the limit is 64 (a Portico config nests about 6)`);
  // The shared config's reader (PUT /v1/config/shared) and the file reader hold it to the same limit.
  t.match(
    only(
      t,
      refusal(t, () => readConfigValue(bomb, 'pushed config')),
    ),
    { line: 1, column, message: /nested 65 levels/ },
  );
  const dir = t.testdir({ 'bomb.yaml': bomb });
  const fromFile = await loadConfigFile(join(dir, 'bomb.yaml')).catch((e: unknown) => e);
  t.type(fromFile, ValidationError);
  t.match((fromFile as ValidationError).message, `${join(dir, 'bomb.yaml')}:1:${column}: nested 65 levels`);
});

t.test('nesting up to the limit is let through; one more level is refused', async (t) => {
  const at = (levels: number) => `a: ${'['.repeat(levels - 1)}${']'.repeat(levels - 1)}\n`;
  t.equal(checkConfigLimits(at(64)).depth, 64);
  t.match(
    only(
      t,
      refusal(t, () => checkConfigLimits(at(65))),
    ),
    { line: 1, column: 67 },
  );
  // Flow inside block: both count.
  const mixed = 'a:\n  b:\n    c: [[[x]]]\n';
  t.equal(checkConfigLimits(mixed).depth, 6);
  t.equal(checkConfigLimits(mixed, undefined, { ...CONFIG_LIMITS, maxDepth: 6 }).depth, 6);
  t.match(
    only(
      t,
      refusal(t, () => checkConfigLimits(mixed, undefined, { ...CONFIG_LIMITS, maxDepth: 5 })),
    ),
    { line: 3, column: 10 },
  );
});

t.test('deep block nesting is refused: by indentation, by compact lists, by lists at their key column', async (t) => {
  const indented = Array.from({ length: 100 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n');
  for (const parser of PARSERS) {
    t.match(
      only(
        t,
        refusal(t, () => parseConfigText(indented, { parser })),
      ),
      { path: '', line: 65, column: 129, message: /nested 65 levels/ },
    );
  }
  const compact = `${'- '.repeat(100)}x\n`;
  t.match(
    only(
      t,
      refusal(t, () => parseConfigText(compact)),
    ),
    { line: 1, column: 129, message: /nested 65 levels/ },
  );
  // k: / - k: / "  - k:" …: each line opens a list at its key's column and a mapping in it.
  const lists = ['k:', ...Array.from({ length: 40 }, (_, j) => `${'  '.repeat(j)}- k:`)].join('\n');
  t.match(
    only(
      t,
      refusal(t, () => parseConfigText(lists)),
    ),
    { line: 33, column: 65, message: /nested 65 levels/ },
  );
});

t.test('alias bombs ("billion laughs") are refused by what they expand to, at the first alias', async (t) => {
  const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 8; i++) {
    const name = String.fromCharCode(98 + i);
    lines.push(
      `${name}: &${name} [${Array(10)
        .fill(`*${String.fromCharCode(97 + i)}`)
        .join(', ')}]`,
    );
  }
  const text = `${lines.join('\n')}\n`;
  const scan = checkConfigLimits(text);
  t.equal(scan.aliases, 80, 'few aliases: the scan lets it through');
  for (const parser of PARSERS) {
    t.same(
      only(
        t,
        refusal(t, () => parseConfigText(text, { parser })),
      ),
      {
        path: '',
        message:
          'aliases expand the document to more than 2,000,000 entries (an alias stands for everything its anchor holds); the limit is 2,000,000; the first alias is here',
        line: 2,
        column: 8,
      },
      parser,
    );
  }
  t.match(
    only(
      t,
      refusal(t, () => readConfigValue(text)),
    ),
    { line: 2, column: 8, message: /aliases expand/ },
  );
});

t.test('aliases that expand within the limit are read, however many (the positions path once stopped at 100)', async (t) => {
  const services = Array.from({ length: 300 }, (_, i) => `  s${i}: { <<: *common, framework: f${i % 3} }`);
  const text = `services:\n  base: &common { balance: p2c, labels: { team: a } }\n${services.join('\n')}\n`;
  t.equal(checkConfigLimits(text).aliases, 300);
  const fast = parseConfigText(text);
  t.equal(Object.keys(fast.services).length, 301);
  t.same(fast.services.s299?.balance, { algorithm: 'p2c' });
  t.same(fast.services.s299?.labels, { team: 'a' });
  t.equal(fast.services.s299?.framework, 'f2');
  t.same(parseConfigText(text, { parser: 'positions' }), fast, 'both paths read it alike');
});

t.test('too many aliases or anchors are refused at the first one over', async (t) => {
  const aliases = `a: &a x\nb: [${'*a, '.repeat(10_001)}]\n`;
  t.same(
    only(
      t,
      refusal(t, () => parseConfigText(aliases)),
    ),
    {
      path: '',
      message: 'more than 10,000 aliases (*name); the limit is 10,000',
      line: 2,
      column: 'b: ['.length + 4 * 10_000 + 1,
    },
  );
  const anchors = `a: [${Array.from({ length: 10_001 }, (_, i) => `&a${i} x`).join(', ')}]\n`;
  t.same(
    only(
      t,
      refusal(t, () => parseConfigText(anchors)),
    ),
    {
      path: '',
      message: 'more than 10,000 anchors (&name); the limit is 10,000',
      line: 1,
      column: anchors.indexOf('&a10000') + 1,
    },
  );
});

t.test('an alias inside the node it names (a cycle) is refused on both paths', async (t) => {
  for (const parser of PARSERS) {
    t.same(
      only(
        t,
        refusal(t, () => parseConfigText('services: &s { web: { labels: *s } }\n', { parser })),
      ),
      { path: '', message: 'an alias names a node that contains it (a cycle); the first alias is here', line: 1, column: 31 },
      parser,
    );
  }
});

t.test('an oversize document is refused where it passes the limit, without parsing', async (t) => {
  const big = `data: ${'x'.repeat(CONFIG_LIMITS.maxBytes)}\n`;
  t.same(
    only(
      t,
      refusal(t, () => parseConfigText(big, { file: 'big.yaml' })),
    ),
    {
      path: '',
      message: 'the document is more than 16,777,216 bytes; the limit is 16,777,216 (it passes the limit here)',
      line: 1,
      column: CONFIG_LIMITS.maxBytes + 1,
    },
  );
  // Counted in UTF-8 bytes: "é" is two.
  const small: ConfigLimits = { ...NO_LIMITS, maxBytes: 10 };
  t.same(
    only(
      t,
      refusal(t, () => checkConfigLimits('a: éééé', undefined, small)),
    ),
    {
      path: '',
      message: 'the document is 11 bytes; the limit is 10 (it passes the limit here)',
      line: 1,
      column: 7,
    },
  );
  t.equal(checkConfigLimits('a: ééé\n', undefined, small).bytes, 10);
});

t.test('an oversize file is refused before it is read', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'huge.yaml');
  await writeFile(file, 'data: ./data\n');
  await truncate(file, CONFIG_LIMITS.maxBytes + 1); // sparse: nothing is written but the size
  const err = await readConfigText(file).catch((e: unknown) => e);
  t.type(err, ValidationError);
  t.equal((err as ValidationError).file, file);
  t.equal((err as ValidationError).message, `${file}: the file is 16,777,217 bytes; the limit is 16,777,216 (it was not read)`);
  const loaded = await loadConfigFile(file).catch((e: unknown) => e);
  t.type(loaded, ValidationError);
  t.match((loaded as ValidationError).message, /the limit is 16,777,216 \(it was not read\)/);
});

t.test('entries: list items and mapping keys, capped', async (t) => {
  t.equal(checkConfigLimits('a: [1, 2, 3]\n').entries, 4);
  t.equal(checkConfigLimits('- a\n- b: c\n  d: e\n').entries, 4);
  t.equal(checkConfigLimits('{a: 1, b: [x, y]}\n').entries, 4, 'a flow collection counts its first entry, then one per comma');
  const flat = `a: [${'0,'.repeat(CONFIG_LIMITS.maxEntries)}0]\n`;
  t.match(
    only(
      t,
      refusal(t, () => parseConfigText(flat)),
    ),
    {
      path: '',
      line: 1,
      message: 'more than 2,000,000 entries (list items and mapping keys); the limit is 2,000,000',
    },
  );
  const few: ConfigLimits = { ...NO_LIMITS, maxEntries: 3 };
  t.same(
    only(
      t,
      refusal(t, () => checkConfigLimits('a: 1\nb: 2\nc: 3\nd: 4\n', undefined, few)),
    ),
    {
      path: '',
      message: 'more than 3 entries (list items and mapping keys); the limit is 3',
      line: 4,
      column: 2,
    },
  );
});

t.test('the limits are generous for a 10,000-service file: it uses less than half of each', async (t) => {
  const text = bigConfigYaml(10_000, 10);
  const scan = checkConfigLimits(text);
  t.ok(scan.bytes * 2 < CONFIG_LIMITS.maxBytes, `${scan.bytes} bytes`);
  t.ok(scan.entries * 2 < CONFIG_LIMITS.maxEntries, `${scan.entries} entries`);
  t.ok(scan.depth * 2 < CONFIG_LIMITS.maxDepth, `depth ${scan.depth}`);
  t.equal(scan.positionsOnly, undefined, 'the fast parser may read it');
  const shipped = checkConfigLimits(await readConfigText(resolve(__dirname, '../../config/portico.yaml')));
  t.ok(shipped.depth <= 8, `config/portico.yaml nests ${shipped.depth} deep`);
});

t.test('what the fast parser reads differently is left to the position-tracking one', async (t) => {
  const rows: Array<[string, string | undefined]> = [
    ['%YAML 1.1\n---\na: 0755\n', 'a % directive'],
    ['? a\n: b\n', 'an explicit key (? )'],
    ['{? a : b}\n', 'an explicit key (? )'],
    ['~: x\n', 'a null key'],
    ['a:\n  null: x\n', 'a null key'],
    ['[a, b]: c\n', 'a collection as a key'],
    ['{a: 1}: c\n', 'a collection as a key'],
    ['x: &v 1\n*v : 2\n', 'an alias as a key'],
    [': x\n', 'an empty or explicit key'],
    ['{: x}\n', 'an empty key'],
    // Read alike by both:
    ['"null": x\n', undefined],
    ["'~': x\n", undefined],
    ['nullable: null\n', undefined],
    ['a: [b, c]\nd: {e: *x}\n', undefined],
    ['a: &x {b: 1}\nc: {<<: *x}\n', undefined],
    ['a: "[b]: c"\n', undefined],
    ['a: |\n  ~: x\n  ? y\n', undefined],
  ];
  for (const [text, why] of rows) t.equal(checkConfigLimits(text).positionsOnly, why, JSON.stringify(text));
});

t.test("js-yaml holds to the bounds it is given (the fast path relies on them if the scan's reading were off)", async (t) => {
  const deep = `${'['.repeat(300)}${']'.repeat(300)}`;
  t.throws(() => load(deep, { ...FAST_LOAD_OPTIONS, maxDepth: 10 } as BoundedLoadOptions), /maxDepth/);
  t.ok(FAST_LOAD_OPTIONS.maxDepth !== undefined && FAST_LOAD_OPTIONS.maxDepth >= 2 * CONFIG_LIMITS.maxDepth);
  // Documents at the scan's depth limit, nested every way, are read by the fast parser.
  const atLimit = {
    flow: `a: ${'['.repeat(63)}${']'.repeat(63)}\n`,
    block: `${Array.from({ length: 64 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n')} x\n`,
    compact: `${'- '.repeat(63)}x\n`,
    lists: `${['k:', ...Array.from({ length: 31 }, (_, j) => `${'  '.repeat(j)}- k:`)].join('\n')} x\n`,
  };
  for (const [how, text] of Object.entries(atLimit)) {
    t.ok(checkConfigLimits(text).depth >= 63, `${how}: at the limit`);
    t.doesNotThrow(() => load(text, FAST_LOAD_OPTIONS), `${how}: js-yaml reads it`);
  }
  const merges = `a: &a {x: 1, y: 2}\nb: {<<: *a}\nc: {<<: *a}\n`;
  t.throws(() => load(merges, { ...FAST_LOAD_OPTIONS, maxTotalMergeKeys: 4 } as BoundedLoadOptions), /maxTotalMergeKeys/);
  t.same(load(merges, FAST_LOAD_OPTIONS), { a: { x: 1, y: 2 }, b: { x: 1, y: 2 }, c: { x: 1, y: 2 } });
});

/** A tiny deterministic generator (a linear congruential one): the same documents on every run. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
}

/** Deepest flow nesting, anchors and aliases as `yaml`'s own lexer sees them. */
function lexerCounts(text: string): { flowDepth: number; anchors: number; aliases: number } {
  let level = 0;
  let flowDepth = 0;
  let anchors = 0;
  let aliases = 0;
  let scalarNext = false; // the token after a scalar marker is the scalar's source, whatever it looks like
  let restOfLine = false; // so is what follows a block scalar header on its line
  for (const token of new Lexer().lex(text)) {
    if (scalarNext) {
      scalarNext = false;
      continue;
    }
    if (token === CST.SCALAR) {
      scalarNext = true;
      continue;
    }
    const type = CST.tokenType(token);
    if (type === 'block-scalar-header') restOfLine = true;
    if (type === 'newline') restOfLine = false;
    if (restOfLine) continue;
    if (type === 'flow-map-start' || type === 'flow-seq-start') flowDepth = Math.max(flowDepth, ++level);
    else if (type === 'flow-map-end' || type === 'flow-seq-end') level = Math.max(0, level - 1);
    else if (type === 'flow-error-end') level = 0;
    else if (type === 'anchor') anchors += 1;
    else if (type === 'alias') aliases += 1;
  }
  return { flowDepth, anchors, aliases };
}

t.test("the scan reads the text as yaml's lexer does: flow nesting, anchors and aliases agree on random documents", async (t) => {
  // prettier-ignore
  const atoms = [
    '[', ']', '{', '}', ':', ': ', ',', ', ', '- ', '? ', '#', ' #', "'", '"', '\\', '\\"', "''", "'''", ' ', '  ', '\t',
    '\n', '\n  ', '\n    ', '\r\n', '\r', '|', '>', '|-\n', '|+\n  ', '>2\n   ', '&a ', '*a', '!t ', '!!str ', '!<x> ',
    'a', 'b1', '~', '0', 'x: ', 'a: b\n', '\n- ', '\n  - ', '---\n', '\n---\n', '...\n', '%YAML 1.2\n', '\ufeff',
  ];
  const rnd = lcg(20_240_601);
  let checked = 0;
  const mismatches: string[] = [];
  for (let n = 0; n < 3000; n++) {
    let text = '';
    const length = 1 + Math.floor(rnd() * 80);
    for (let i = 0; i < length; i++) text += atoms[Math.floor(rnd() * atoms.length)];
    const want = lexerCounts(text);
    const got = checkConfigLimits(text, undefined, NO_LIMITS);
    if (want.flowDepth !== got.flowDepth || want.anchors !== got.anchors || want.aliases !== got.aliases) {
      mismatches.push(`${JSON.stringify(text)}: lexer ${JSON.stringify(want)}, scan ${JSON.stringify(got)}`);
    }
    checked += 1;
  }
  t.equal(checked, 3000);
  t.same(mismatches, [], 'no document where the scan and the lexer disagree');
});
