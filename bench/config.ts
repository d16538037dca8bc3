/**
 * `npm run bench -- config`: reading the config file of 10,000 services / 100,000 endpoints (generated,
 * test/config/big.ts), parse + validate, the way each path does it:
 *
 *  - positions: `yaml`'s position-tracking document alone, as every file was read before the fast path
 *    (`parseConfigText(text, { parser: 'positions' })`), but with the one-pass duplicate-key check of
 *    locate.ts in place of `yaml`'s own (`uniqueKeys`), which compares each key with every earlier one:
 *    the loader before this path used that one, which the two parseDocument figures below show;
 *  - fast: the limits scan, js-yaml, the schema, decoding and the rules (the default path);
 *  - fast, one error: the same file with one bad port at its end, so the fast path fails and `yaml` reads
 *    the text again to give the issue its line and column;
 * beside the two parsers alone (js-yaml with its core schema, `yaml`'s parseDocument) and the scan alone.
 * Medians of RUNS runs each, in one process, one after another.
 */
import { isDeepStrictEqual } from 'node:util';
import { load } from 'js-yaml';
import { LineCounter, parseDocument } from 'yaml';
import { checkConfigLimits } from '../src/config/limits.js';
import { parseConfigText } from '../src/config/load.js';
import { ValidationError } from '../src/model/errors.js';
import { bigConfigYaml } from '../test/config/big.js';
import { median, ratio, report, round, say } from './lib.js';

const RUNS = 3;
const SERVICES = 10_000;
const ENDPOINTS_PER_SERVICE = 10;

function time(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function medianOf(fn: () => unknown): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(time(fn));
  return round(median(times), 1);
}

export async function main(): Promise<void> {
  const text = bigConfigYaml(SERVICES, ENDPOINTS_PER_SERVICE);
  const bytes = Buffer.byteLength(text);
  say(
    `config: ${SERVICES} services, ${SERVICES * ENDPOINTS_PER_SERVICE} endpoints, ${(bytes / 2 ** 20).toFixed(1)} MiB; ${RUNS} runs each`,
  );

  // The two paths must read the file to the same config, or their times compare nothing.
  if (!isDeepStrictEqual(parseConfigText(text, { parser: 'fast' }), parseConfigText(text, { parser: 'positions' }))) {
    throw new Error('the fast and the positions path read the generated file differently');
  }
  // One bad port on the last endpoint line: found by the schema, explained by `yaml`.
  const lines = text.split('\n');
  const last = lines.map((l, i) => (l.includes('port: ') ? i : -1)).reduce((a, b) => Math.max(a, b));
  lines[last] = (lines[last] as string).replace(/port: \d+/, 'port: 70000');
  const broken = lines.join('\n');
  const explainIssue = (): void => {
    try {
      parseConfigText(broken);
    } catch (err) {
      if (err instanceof ValidationError && err.issues.length === 1 && err.issues[0]?.line === last + 1) return;
      throw err;
    }
    throw new Error('the broken file was accepted');
  };

  const results = {
    positions: { parseValidateMs: medianOf(() => parseConfigText(text, { parser: 'positions' })) },
    fast: { parseValidateMs: medianOf(() => parseConfigText(text)) },
    fastOneError: { parseValidateExplainMs: medianOf(explainIssue) },
    parsers: {
      scanMs: medianOf(() => checkConfigLimits(text)),
      jsYamlMs: medianOf(() => load(text)),
      yamlDocumentMs: medianOf(() => parseDocument(text, { lineCounter: new LineCounter(), uniqueKeys: false, merge: true })),
      yamlDocumentUniqueKeysMs: medianOf(() => parseDocument(text, { lineCounter: new LineCounter(), uniqueKeys: true, merge: true })),
    },
  };
  say(`positions path (yaml alone):   parse + validate ${results.positions.parseValidateMs} ms`);
  say(`fast path (scan + js-yaml):    parse + validate ${results.fast.parseValidateMs} ms`);
  say(`fast path, one issue:          parse + validate + explain ${results.fastOneError.parseValidateExplainMs} ms`);
  say(
    `alone: scan ${results.parsers.scanMs} ms, js-yaml ${results.parsers.jsYamlMs} ms, yaml parseDocument ${results.parsers.yamlDocumentMs} ms (with its uniqueKeys check, as the loader read before: ${results.parsers.yamlDocumentUniqueKeysMs} ms)`,
  );
  const speedup = ratio(results.positions.parseValidateMs, results.fast.parseValidateMs);
  say(`fast path: ${speedup}× the positions path`);
  report({
    bench: 'config',
    runs: RUNS,
    results: { ...results, file: { services: SERVICES, endpoints: SERVICES * ENDPOINTS_PER_SERVICE, bytes } },
    ratios: {
      positionsOverFast: speedup,
      explainOverFast: ratio(results.fastOneError.parseValidateExplainMs, results.fast.parseValidateMs),
    },
  });
}
