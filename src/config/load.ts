/**
 * Loading the config file: limits (limits.ts) → YAML → schema (ajv) → decode (the definitions in
 * schema.ts) → rules across sections (rules.ts) → typed, frozen PorticoConfig.
 *
 * Every problem is collected and reported at once, each with its path (`services.web.endpoints[1].port`)
 * and the line and column of the node the user wrote, so one edit-reload cycle fixes a whole file.
 *
 * Two YAML parsers read the text. js-yaml (with the YAML 1.2 core schema of `yaml`, below) is several
 * times faster and reads a valid file; the `yaml` package keeps the position of every node, and reads the
 * text again only when something failed: to explain a syntax error in its own words, and to attach a
 * line and column to each issue the fast path found. A document the fast parser would read differently
 * (limits.ts lists what) is read by `yaml` alone. Both give the same plain value; the tests hold them to it.
 */
import { open } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import Ajv from 'ajv';
import type { ErrorObject } from 'ajv';
import { FAILSAFE_SCHEMA, load as loadFast, Type } from 'js-yaml';
import type { LoadOptions } from 'js-yaml';
import { LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { ErrorCodes, PorticoError, ValidationError } from '../model/errors.js';
import type { ValidationIssue } from '../model/errors.js';
import { FORMATS, isFormatName } from './formats.js';
import { CONFIG_LIMITS, checkConfigLimits, checkExpansion } from './limits.js';
import type { ScanReport } from './limits.js';
import { duplicateKeys, formatPath, positionOf, toPosition } from './locate.js';
import type { PathSegment, PathTarget } from './locate.js';
import { deepFreeze, INVALID, Walk } from '../model/settings.js';
import { checkConfig } from './rules.js';
import { configSchema, configSettings } from './schema.js';
import type { JsonSchema } from './schema.js';
import type { PorticoConfig } from './types.js';

export interface ParseOptions {
  /** File name used in messages (`file:line:col`) and, by default, for baseDir. */
  file?: string;
  /** Directory relative certificate paths are resolved against. Default: the file's directory, else cwd. */
  baseDir?: string;
  /**
   * Entrypoints defined elsewhere that routes may name: a pushed shared config routes to the entrypoints
   * each instance's own file defines.
   */
  extraEntrypoints?: readonly string[];
  /**
   * `fast` (the default): js-yaml first, `yaml` to explain a failure. `positions`: `yaml` alone, as the
   * loader read every file before the fast path; the tests and `npm run bench -- config` compare the two.
   */
  parser?: 'fast' | 'positions';
}

/** Compiled once: compiling is the slow part of ajv, validating is cheap. */
const validateSchema = (() => {
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
  for (const [name, parse] of Object.entries(FORMATS)) ajv.addFormat(name, { type: 'string', validate: (s: string) => parse(s).ok });
  return ajv.compile(configSchema);
})();

// ---------------------------------------------------------------------------------------------------
// The fast parser, held to `yaml`'s reading

/**
 * The scalars of `yaml`'s YAML 1.2 core schema (yaml/dist/schema/core), as js-yaml types: its own core
 * schema reads `0b101`, `-0x1F` and `+0o7` as numbers, where `yaml` reads strings. Merge keys (`<<`) as
 * `yaml` reads them with `merge: true`. Explicit tags of the core schema (`!!str`, `!!int` …) resolve the
 * same way; any other tag is an error for js-yaml, and `yaml` reads the document then.
 */
const NULL_RE = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL_RE = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const INT_OCT_RE = /^0o[0-7]+$/;
const INT_RE = /^[-+]?[0-9]+$/;
const INT_HEX_RE = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN_RE = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP_RE = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT_RE = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

const CORE_SCHEMA = FAILSAFE_SCHEMA.extend({
  implicit: [
    new Type('tag:yaml.org,2002:null', { kind: 'scalar', resolve: (s: string) => NULL_RE.test(s), construct: () => null }),
    new Type('tag:yaml.org,2002:bool', {
      kind: 'scalar',
      resolve: (s: string) => BOOL_RE.test(s),
      construct: (s: string) => s[0] === 't' || s[0] === 'T',
    }),
    new Type('tag:yaml.org,2002:int', {
      kind: 'scalar',
      resolve: (s: string) => INT_OCT_RE.test(s) || INT_RE.test(s) || INT_HEX_RE.test(s),
      construct: (s: string) =>
        INT_OCT_RE.test(s) ? parseInt(s.slice(2), 8) : INT_HEX_RE.test(s) ? parseInt(s.slice(2), 16) : parseInt(s, 10),
    }),
    new Type('tag:yaml.org,2002:float', {
      kind: 'scalar',
      resolve: (s: string) => FLOAT_NAN_RE.test(s) || FLOAT_EXP_RE.test(s) || FLOAT_RE.test(s),
      construct: (s: string) =>
        FLOAT_NAN_RE.test(s) ? (s.slice(-3).toLowerCase() === 'nan' ? NaN : s[0] === '-' ? -Infinity : Infinity) : parseFloat(s),
    }),
    // js-yaml's own merge type, which its type definitions do not export: the loader merges a key of this tag.
    new Type('tag:yaml.org,2002:merge', { kind: 'scalar', resolve: (s: string) => s === '<<' }),
  ],
});

/** js-yaml's own bounds (4.3), which its type definitions do not list yet. */
export interface BoundedLoadOptions extends LoadOptions {
  /** Deepest nesting of nodes before it refuses (its default is 100). */
  maxDepth?: number;
  /** Most keys copied by merge keys before it refuses (its default is 10,000). */
  maxTotalMergeKeys?: number;
}

/** What the fast path loads with (the tests hold js-yaml to `yaml` with it). */
export const FAST_LOAD_OPTIONS: Readonly<BoundedLoadOptions> = {
  schema: CORE_SCHEMA,
  // js-yaml counts about one level more than the scan does (the scalar at the end of a path); twice the
  // scan's limit leaves it room for any document the scan let through, and still bounds its recursion.
  maxDepth: 2 * CONFIG_LIMITS.maxDepth + 4,
  maxTotalMergeKeys: CONFIG_LIMITS.maxEntries,
};

/** Marks a document the fast parser could not read. */
const UNREAD: unique symbol = Symbol('unread');

function readFast(text: string): unknown {
  try {
    return loadFast(text, FAST_LOAD_OPTIONS);
  } catch {
    return UNREAD; // a syntax error, or something only `yaml` reads: it says which, with the position
  }
}

// ---------------------------------------------------------------------------------------------------

interface PendingIssue {
  path: PathSegment[];
  message: string;
  target: PathTarget;
}

/** Parse and validate config text. Throws ValidationError listing every issue. */
export function parseConfigText(text: string, opts: ParseOptions = {}): PorticoConfig {
  const scan = checkConfigLimits(text, opts.file);
  if (opts.parser !== 'positions' && scan.positionsOnly === undefined) {
    const raw = readFast(text);
    if (raw !== UNREAD) {
      checkExpansion(raw, scan, text, opts.file);
      const { config, pending } = validate(raw, opts);
      if (pending.length === 0) return deepFreeze(config);
      return explain(text, scan, opts, pending);
    }
  }
  return explain(text, scan, opts);
}

/**
 * The plain value of a config document (what the schema validates), read within the limits: the fast
 * parser first, `yaml` when it fails. `undefined` when the text is not YAML (parseConfigText reports
 * why, with the position). Throws ValidationError when the text passes a limit.
 */
export function readConfigValue(text: string, file?: string): unknown {
  const scan = checkConfigLimits(text, file);
  let raw = scan.positionsOnly === undefined ? readFast(text) : UNREAD;
  if (raw === UNREAD) {
    const doc = parseTracked(text, file);
    if (doc.errors.length > 0 || duplicateKeys(doc).length > 0) return undefined;
    raw = toPlain(doc, file);
  }
  checkExpansion(raw, scan, text, file);
  return raw ?? {};
}

/**
 * Parse with `yaml`. Its own duplicate-key check compares each key with every earlier one (seconds for the
 * 10,000 keys of a large `services:`), so it is off here and locate.ts's duplicateKeys finds the same
 * keys in one pass. A document nested deeper than the parser's stack is an issue, not a crash.
 */
function parseTracked(text: string, file: string | undefined, lineCounter?: LineCounter): Document.Parsed {
  try {
    return parseDocument(text, { ...(lineCounter && { lineCounter }), uniqueKeys: false, prettyErrors: false, merge: true });
  } catch (err) {
    if (err instanceof RangeError) throw new ValidationError([{ path: '', message: 'the document nests too deeply to read' }], file);
    throw err;
  }
}

/**
 * The document as plain JS, aliases shared (not copied): what limits.ts's checkExpansion bounds.
 * `issues` found before (duplicate keys) are reported with what stops it.
 */
function toPlain(doc: Document.Parsed, file: string | undefined, issues: ValidationIssue[] = []): unknown {
  try {
    return doc.toJS({ maxAliasCount: -1 });
  } catch (err) {
    // An alias before its anchor, a merge key whose value is not a mapping, a nesting too deep.
    const message = err instanceof RangeError ? 'the document nests too deeply to read' : (err as Error).message;
    throw new ValidationError([...issues, { path: '', message }], file);
  }
}

/**
 * The position-tracking path: read `text` with `yaml`, and report its syntax errors, or the issues of
 * `pending` (found on the fast path's value, which is the same value) or of its own validation, each at
 * the line and column of the node it names.
 */
function explain(text: string, scan: ScanReport, opts: ParseOptions, pending?: PendingIssue[]): PorticoConfig {
  const lineCounter = new LineCounter();
  const doc = parseTracked(text, opts.file, lineCounter);

  // Parser errors: a duplicate key leaves a usable document (keep going, to report the rest too);
  // anything else means the structure is not what the user wrote, and more messages would mislead.
  // Only a duplicate key gets a path: after a syntax error the document's shape is the parser's
  // guess, and a path from it would point the reader at the wrong key. (Where the fast parser read the
  // document, it had found no duplicate key: it refuses them, more strictly than `yaml`.)
  const errors = doc.errors.map((e) => ({ offset: e.pos[0], issue: { path: '', message: e.message } as ValidationIssue }));
  const duplicates = pending ? [] : duplicateKeys(doc);
  const yamlIssues: ValidationIssue[] = [
    ...errors,
    ...duplicates.map((d) => ({
      offset: d.offset,
      issue: {
        path: formatPath(d.path),
        message: `duplicate key "${String(d.path[d.path.length - 1] ?? '')}" (a key may appear once per mapping)`,
      },
    })),
  ]
    .sort((a, b) => a.offset - b.offset)
    .map(({ offset, issue }) => ({ ...issue, ...toPosition(lineCounter, offset) }));
  if (errors.length > 0) throw new ValidationError(yamlIssues, opts.file);

  let found = yamlIssues.length === 0 ? pending : undefined;
  let config: PorticoConfig | undefined;
  if (!found) {
    const raw = toPlain(doc, opts.file, yamlIssues);
    checkExpansion(raw, scan, text, opts.file);
    ({ config, pending: found } = validate(raw, opts));
  }

  const issues = [...yamlIssues];
  const seen = new Set<string>();
  for (const p of found) {
    // The same problem found twice (a rule and the schema): keep one copy of each message.
    const path = formatPath(p.path);
    const key = `${path}\0${p.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push({ path, message: p.message, ...positionOf(doc, lineCounter, p.path, p.target) });
  }
  if (issues.length > 0 || !config) throw new ValidationError(sortIssues(issues), opts.file);
  return deepFreeze(config);
}

/** Schema, decode and the rules over a plain value: the config, and every issue found on the way. */
function validate(input: unknown, opts: ParseOptions): { config: PorticoConfig; pending: PendingIssue[] } {
  // An empty file (or only comments) is a valid, all-defaults config.
  const raw = input === null || input === undefined ? {} : input;
  const pending: PendingIssue[] = [];
  if (!validateSchema(raw)) {
    for (const e of validateSchema.errors ?? []) {
      const issue = fromAjvError(e, raw);
      if (issue) pending.push(issue);
    }
  }
  const baseDir = opts.baseDir ?? (opts.file !== undefined ? dirname(resolve(opts.file)) : process.cwd());
  // Decoding and the rules run even when the schema found problems, so one load reports everything; a
  // value the schema refused decodes to its default (or nothing), and the result is only used when no
  // issue at all was reported.
  const w = new Walk([], (path, message, target = 'value') => pending.push({ path: [...path], message, target }), baseDir);
  const decoded = configSettings.decode(raw, w);
  const config = (decoded === INVALID ? configSettings.defaultValue : decoded) as PorticoConfig;
  checkConfig(config, w, opts.extraEntrypoints);
  return { config, pending };
}

/** Read and parse a config file. Read errors are PorticoError CONFIG_READ; content errors ValidationError. */
export async function loadConfigFile(path: string): Promise<PorticoConfig> {
  return parseConfigText(await readConfigText(path), { file: path });
}

/**
 * The text of a config file; a read error becomes PorticoError CONFIG_READ naming the path and the reason.
 * A file larger than the limit (limits.ts) is refused before it is read, with ValidationError.
 */
export async function readConfigText(path: string): Promise<string> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size > CONFIG_LIMITS.maxBytes) {
        throw new ValidationError(
          [
            {
              path: '',
              message: `the file is ${size.toLocaleString('en-US')} bytes; the limit is ${CONFIG_LIMITS.maxBytes.toLocaleString('en-US')} (it was not read)`,
            },
          ],
          path,
        );
      }
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof ValidationError) throw err;
    throw new PorticoError(ErrorCodes.CONFIG_READ, `cannot read config file ${path}: ${readReason(err)}`, 500, { cause: err });
  }
  return text;
}

function readReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    default:
      return (err as Error).message;
  }
}

function sortIssues(issues: ValidationIssue[]): ValidationIssue[] {
  return issues
    .map((issue, index) => ({ issue, index }))
    .sort((a, b) => (a.issue.line ?? 0) - (b.issue.line ?? 0) || (a.issue.column ?? 0) - (b.issue.column ?? 0) || a.index - b.index)
    .map((x) => x.issue);
}

// ---------------------------------------------------------------------------------------------------
// ajv errors → issues in the config's own words

/** ajv's JSON pointer → path segments; array indices become numbers (so they print as `[1]`). */
function pointerToPath(pointer: string, root: unknown): PathSegment[] {
  const path: PathSegment[] = [];
  let node: unknown = root;
  for (const part of pointer.split('/').slice(1)) {
    const seg = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      path.push(Number(seg));
      node = node[Number(seg)];
    } else {
      path.push(seg);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[seg] : undefined;
    }
  }
  return path;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing (the key has no value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  null: 'empty',
};

function formatMessage(format: string, value: unknown): string {
  const parse = FORMATS[format];
  if (isFormatName(format) && parse && typeof value === 'string') {
    const r = parse(value);
    if (!r.ok) return r.error;
  }
  return `must be a valid ${format}`;
}

function fromAjvError(e: ErrorObject, root: unknown): PendingIssue | undefined {
  // propertyNames reports twice (the inner format, then propertyNames itself); keep the outer one,
  // which knows the offending key.
  if (e.schemaPath.includes('/propertyNames/')) return undefined;
  const path = pointerToPath(e.instancePath, root);
  const parent = e.parentSchema as JsonSchema | undefined;
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const known = Object.keys((parent?.properties as Record<string, unknown> | undefined) ?? {});
      const hint = suggest(key, known);
      return {
        path: [...path, key],
        message: `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : known.length ? ` (known keys: ${known.join(', ')})` : ''}`,
        target: 'key',
      };
    }
    case 'propertyNames': {
      const key = String(params.propertyName);
      const inner = parent?.propertyNames as JsonSchema | undefined;
      const format = typeof inner?.format === 'string' ? inner.format : 'name';
      return { path: [...path, key], message: formatMessage(format, key), target: 'key' };
    }
    case 'required':
      return { path, message: `missing required key "${String(params.missingProperty)}"`, target: 'value' };
    case 'type': {
      const types = String(params.type)
        .split(',')
        .map((t) => TYPE_NAMES[t] ?? t);
      return { path, message: `must be ${types.join(' or ')}, not ${describe(e.data)}`, target: 'value' };
    }
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map((v) => String(v)).join(', ');
      return { path, message: `must be one of ${allowed}, not ${describe(e.data)}`, target: 'value' };
    }
    case 'format':
      return { path, message: formatMessage(String(params.format), e.data), target: 'value' };
    case 'minimum':
    case 'maximum': {
      const min = parent?.minimum;
      const max = parent?.maximum;
      const range =
        typeof min === 'number' && typeof max === 'number'
          ? `${min}..${max}`
          : `${e.keyword === 'minimum' ? '>=' : '<='} ${String(params.limit)}`;
      return { path, message: `must be ${range} (got ${String(e.data)})`, target: 'value' };
    }
    case 'uniqueItems': {
      // Point at the later copy: that is the one to delete.
      const [first, second] = [Number(params.i), Number(params.j)].sort((a, b) => a - b);
      return { path: [...path, second as number], message: `listed twice (same as item ${first as number})`, target: 'value' };
    }
    default:
      return { path, message: e.message ?? `fails ${e.keyword}`, target: 'value' };
  }
}

/** The known key closest to a misspelt one, if it is close enough to be a likely typo. */
function suggest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
    }
    prev = row;
  }
  return prev[b.length] as number;
}

/** What loads when there is no config file at all: every default. */
export const DEFAULT_CONFIG: PorticoConfig = parseConfigText('');
