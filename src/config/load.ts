/**
 * Loading the config file: YAML → schema (ajv) → decode (the definitions in schema.ts) → rules across
 * sections (rules.ts) → typed, frozen PorticoConfig.
 *
 * Every problem is collected and reported at once, each with its path (`services.web.endpoints[1].port`)
 * and the line and column of the node the user wrote, so one edit-reload cycle fixes a whole file.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import Ajv from 'ajv';
import type { ErrorObject } from 'ajv';
import { LineCounter, parseDocument } from 'yaml';
import { ErrorCodes, PorticoError, ValidationError } from '../model/errors.js';
import type { ValidationIssue } from '../model/errors.js';
import { FORMATS, isFormatName } from './formats.js';
import { formatPath, pathAtOffset, positionOf, toPosition } from './locate.js';
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
}

/** Compiled once: compiling is the slow part of ajv, validating is cheap. */
const validateSchema = (() => {
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
  for (const [name, parse] of Object.entries(FORMATS)) ajv.addFormat(name, { type: 'string', validate: (s: string) => parse(s).ok });
  return ajv.compile(configSchema);
})();

interface PendingIssue {
  path: PathSegment[];
  message: string;
  target: PathTarget;
}

/** Parse and validate config text. Throws ValidationError listing every issue. */
export function parseConfigText(text: string, opts: ParseOptions = {}): PorticoConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, merge: true });

  // Parser errors: a duplicate key leaves a usable document (keep going, to report the rest too);
  // anything else means the structure is not what the user wrote, and more messages would mislead.
  // Only a duplicate key gets a path: after a syntax error the document's shape is the parser's
  // guess, and a path from it would point the reader at the wrong key.
  const yamlIssues: ValidationIssue[] = doc.errors.map((e) => {
    const where = toPosition(lineCounter, e.pos[0]);
    if (e.code !== 'DUPLICATE_KEY') return { path: '', message: e.message, ...where };
    const path = pathAtOffset(doc, e.pos[0]);
    const key = String(path[path.length - 1] ?? '');
    return { path: formatPath(path), message: `duplicate key "${key}" (a key may appear once per mapping)`, ...where };
  });
  if (doc.errors.some((e) => e.code !== 'DUPLICATE_KEY')) throw new ValidationError(yamlIssues, opts.file);

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // e.g. an alias bomb ("billion laughs"): refuse, do not expand.
    throw new ValidationError([...yamlIssues, { path: '', message: (err as Error).message }], opts.file);
  }
  // An empty file (or only comments) is a valid, all-defaults config.
  if (raw === null || raw === undefined) raw = {};

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

  const issues = [...yamlIssues];
  const seen = new Set<string>();
  for (const p of pending) {
    // The same problem found twice (a rule and the schema): keep one copy of each message.
    const path = formatPath(p.path);
    const key = `${path}\0${p.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push({ path, message: p.message, ...positionOf(doc, lineCounter, p.path, p.target) });
  }
  if (issues.length > 0) throw new ValidationError(sortIssues(issues), opts.file);
  return deepFreeze(config);
}

/** Read and parse a config file. Read errors are PorticoError CONFIG_READ; content errors ValidationError. */
export async function loadConfigFile(path: string): Promise<PorticoConfig> {
  return parseConfigText(await readConfigText(path), { file: path });
}

/** The text of a config file; a read error becomes PorticoError CONFIG_READ naming the path and the reason. */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new PorticoError(ErrorCodes.CONFIG_READ, `cannot read config file ${path}: ${readReason(err)}`, 500, { cause: err });
  }
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
