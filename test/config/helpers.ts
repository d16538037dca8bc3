/** Test helpers for config tests (not a test file itself: no `.test.` in the name). */
import { ValidationError } from '../../src/model/errors.js';
import type { ValidationIssue } from '../../src/model/errors.js';
import { parseConfigText } from '../../src/config/index.js';

/** Strip the common indentation of a template literal, so YAML can be written indented in a test. */
export function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = String.raw({ raw: strings }, ...values).replace(/^\n/, '');
  const lines = text.split('\n');
  const indents = lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)?.[0].length ?? 0);
  const cut = indents.length ? Math.min(...indents) : 0;
  return lines
    .map((l) => l.slice(cut))
    .join('\n')
    .replace(/[ ]+$/, '');
}

/** The issues parseConfigText reports for `text`; throws if it accepts the text. */
export function issuesOf(text: string): ValidationIssue[] {
  try {
    parseConfigText(text, { file: 'test.yaml', baseDir: '/etc/portico' });
  } catch (err) {
    if (err instanceof ValidationError) return err.issues;
    throw err;
  }
  throw new Error('expected the config to be refused, but it was accepted');
}
