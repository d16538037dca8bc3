/**
 * Settings defined once. A `Setting` is one key of a settings section: the JSON Schema of what the config
 * file holds there (built with TypeBox, with its description and default), how that file value becomes the
 * value an engine reads (`decode`: "10s" → 10000, "16KiB" → 16384, addresses and CIDRs normalised), and
 * how a value handed to an engine directly is checked (`accept`). A section is a record of settings keyed
 * by the engine's own names; the key in the file is derived from it (`headerTimeoutMs` is written
 * `headerTimeout`, `readBufferBytes` is written `readBufferSize`) unless the setting names its own.
 *
 * From one section come:
 * - its JSON Schema (`section.schema`): the config file's schema is composed of the sections;
 * - its TypeScript type (`Decoded<typeof defs>`, or `ValueOf<typeof section>`): an engine's options type;
 * - its defaults (`section.defaultValue`): the schema's `default`s, decoded.
 *
 * Each plane defines its section in its own folder (src/l7/settings.ts, …) and src/config composes the
 * file from them, so a plane never imports the config code. TypeBox emits plain JSON Schema objects (its
 * own markers are symbol keys, invisible to JSON and to ajv), which the config loader validates with ajv.
 */
import { Type, type TSchema } from '@sinclair/typebox';
import { isValidDnsName } from './names.js';
import { formatListen, parseAddress, parseCidr, parseDuration, parseListen, parseSize, type Parsed } from './parse.js';

export type PathSegment = string | number;
/** Where in a key/value pair a problem is: the key itself, or its value. */
export type PathTarget = 'key' | 'value';

/** Where a decode or an accept is, and where it reports problems. */
export class Walk {
  constructor(
    readonly path: readonly PathSegment[],
    readonly report: (path: readonly PathSegment[], message: string, target?: PathTarget) => void,
    /** Directory relative file paths are resolved against (the config file's). */
    readonly baseDir: string = process.cwd(),
  ) {}

  at(segment: PathSegment): Walk {
    return new Walk([...this.path, segment], this.report, this.baseDir);
  }

  /** Report at this path (or below it). */
  fail(message: string, below: readonly PathSegment[] = [], target?: PathTarget): void {
    this.report([...this.path, ...below], message, target);
  }
}

/** What a decoder returns for a value the schema refuses: the schema's error says why, the walker uses the default. */
export const INVALID: unique symbol = Symbol('invalid');
export type Invalid = typeof INVALID;

export type SettingKind =
  'boolean' | 'integer' | 'number' | 'enum' | 'string' | 'duration' | 'size' | 'list' | 'map' | 'section' | 'custom';

/**
 * One setting. `O` is true when a file without it leaves it out of the decoded value (no default).
 */
export interface Setting<V = unknown, O extends boolean = boolean> {
  readonly kind: SettingKind;
  /** The JSON Schema of the file's value at this key (description, default, format, bounds). */
  readonly schema: TSchema;
  readonly optional: O;
  /** The file must give it (the schema's `required`). */
  readonly required: boolean;
  /** Read and checked, but not passed on (a key that only selects, like a health check's `tcp: true`). */
  readonly omit: boolean;
  /** The key in the file: given, or derived from the engine key (`…Ms` → `…`, `…Bytes` → `…Size`). */
  fileKey(engineKey: string): string;
  /** The decoded default; undefined when `optional`. */
  readonly defaultValue: V | undefined;
  /** The settings of a section, the item of a list, the value of a map: for docs and tests. */
  readonly children?: Readonly<Record<string, Setting>>;
  readonly item?: Setting;
  /** The file's value → the engine's, or INVALID when the value is not what the schema allows. */
  decode(raw: unknown, w: Walk): V | Invalid;
  /** A value given to an engine directly: checked (problems reported), defaults filled, normalised. */
  accept(value: unknown, w: Walk): V | Invalid;
}

/** The value a setting decodes to. */
export type ValueOf<S> = S extends Setting<infer V, boolean> ? V : never;

export type Defs = Record<string, Setting<unknown, boolean>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OmittedKeys<D extends Defs> = { [K in keyof D]: D[K] extends { readonly omit: true } ? K : never }[keyof D];
type OptionalKeys<D extends Defs> = { [K in keyof D]: D[K] extends Setting<unknown, true> ? K : never }[keyof D];
/** The decoded form of a section: engine keys, engine units; settings without a default are optional. */
export type Decoded<D extends Defs> = Simplify<
  { -readonly [K in Exclude<keyof D, OptionalKeys<D> | OmittedKeys<D>>]: ValueOf<D[K]> } & {
    -readonly [K in Exclude<OptionalKeys<D>, OmittedKeys<D>>]?: ValueOf<D[K]>;
  }
>;

/** A string format: its name (the schema's `format`, registered with ajv) and its parser, which normalises. */
export interface Format<T = string> {
  readonly name: string;
  parse(text: string): Parsed<T>;
}

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

// ---------------------------------------------------------------------------------------------------
// Formats the planes' settings use (the config adds its own: see src/config/formats.ts)

/** `250ms`, `2s`, `1m30s`. */
export const DURATION: Format<number> = { name: 'duration', parse: parseDuration };
/** `16KiB`, `10MiB`, `1g` (binary units). */
export const SIZE: Format<number> = { name: 'size', parse: (t) => parseSize(t) };
/** An IPv4 or IPv6 address, normalised. */
export const IP: Format = { name: 'ip', parse: parseAddress };
/** `host:port`, `[v6]:port`, `:8080` (every IPv4 interface), normalised. */
export const LISTEN: Format = {
  name: 'listen',
  parse(text) {
    const l = parseListen(text);
    return l.ok ? ok(formatListen(l.value)) : l;
  },
};
/** A CIDR whose address is a full IPv4 dotted quad or an IPv6 address (never `10/8`); a bare address is a host prefix. */
export const CIDR: Format = {
  name: 'cidr',
  parse(text) {
    const slash = text.indexOf('/');
    const addr = parseAddress(slash < 0 ? text : text.slice(0, slash));
    if (!addr.ok) return fail(`"${text}" is not a CIDR (write e.g. "10.0.0.0/8" or "fd00::/8")`);
    if (slash >= 0 && !/^\d{1,3}$/.test(text.slice(slash + 1))) return fail(`"${text}" is not a CIDR: the prefix length must be a number`);
    return parseCidr(text);
  },
};
/** A DNS forwarder: `ip` (port 53) or `ip:port` / `[v6]:port`, normalised to `ip:port`. */
export const UPSTREAM: Format = {
  name: 'upstream',
  parse(text) {
    const bare = parseAddress(text);
    if (bare.ok && !text.trim().startsWith('[')) return ok(formatListen({ host: bare.value, port: 53 }));
    const l = parseListen(text);
    if (!l.ok || text.trim().startsWith(':') || l.value.port === 0) {
      return fail(`"${text}" is not a DNS upstream (write an IP, "ip:port" or "[v6]:port")`);
    }
    return ok(formatListen(l.value));
  },
};
/** An RFC 9110 token: header names, methods, cookie names. */
export const HTTP_TOKEN: Format = {
  name: 'http-token',
  parse: (text) =>
    /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(text)
      ? ok(text)
      : fail(`"${text}" is not a valid HTTP token (letters, digits and !#$%&'*+.^_\`|~-)`),
};
/** A DNS domain, lower-cased, without its trailing dot. */
export const DOMAIN: Format = {
  name: 'domain',
  parse(text) {
    const d = text.toLowerCase().replace(/\.$/, '');
    return isValidDnsName(d) ? ok(d) : fail(`"${text}" is not a valid DNS domain`);
  },
};

// ---------------------------------------------------------------------------------------------------
// Building blocks

type Check<V> = (value: V) => string | undefined;

interface LeafOptions<V> {
  /** The key in the file, when it is not the engine key (or the engine key's derived file form). */
  file?: string;
  /** A rule beyond the schema's, on the decoded value: a message, or undefined when it holds. */
  check?: Check<V>;
}

const same = (k: string): string => k;
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

function range(min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return `${min}..${max}`;
  if (min !== undefined) return `>= ${min}`;
  return `<= ${String(max)}`;
}

/**
 * The shared part of every leaf: a file value is parsed by `parse` (INVALID when the schema refuses it),
 * an engine value by `take`; `check` runs on both. Defaults are given in the file's form and decoded once.
 */
function leaf<V, O extends boolean>(spec: {
  kind: SettingKind;
  schema: TSchema;
  def: unknown;
  parse: (raw: unknown) => V | Invalid;
  take: (value: unknown, w: Walk) => V | Invalid;
  fileKey?: (k: string) => string;
  o: LeafOptions<V> | undefined;
}): Setting<V, O> {
  const { o } = spec;
  const run = (v: V | Invalid, w: Walk): V | Invalid => {
    if (v === INVALID) return v;
    const message = o?.check?.(v);
    if (message !== undefined) w.fail(message);
    return v;
  };
  let defaultValue: V | undefined;
  if (spec.def !== undefined) {
    const d = spec.parse(spec.def);
    if (d === INVALID) throw new TypeError(`settings: the default ${show(spec.def)} is not valid for its own schema`);
    defaultValue = d;
  }
  return {
    kind: spec.kind,
    schema: spec.schema,
    optional: (spec.def === undefined) as O,
    required: false,
    omit: false,
    fileKey: o?.file !== undefined ? () => o.file as string : (spec.fileKey ?? same),
    defaultValue,
    decode: (raw, w) => run(spec.parse(raw), w),
    accept: (value, w) => run(spec.take(value, w), w),
  };
}

const described = (description: string, def: unknown) => ({ description, ...(def !== undefined && { default: def }) });

type Opt<D> = D extends undefined ? true : false;

export function bool<D extends boolean | undefined = undefined>(
  description: string,
  def?: D,
  o?: LeafOptions<boolean>,
): Setting<boolean, Opt<D>> {
  return leaf({
    kind: 'boolean',
    schema: Type.Boolean(described(description, def)),
    def,
    parse: (raw) => (typeof raw === 'boolean' ? raw : INVALID),
    take: (v, w) => (typeof v === 'boolean' ? v : (w.fail(`must be true or false, not ${show(v)}`), INVALID)),
    o,
  });
}

function numeric<D extends number | undefined>(
  kind: 'integer' | 'number',
  description: string,
  def: D,
  bounds: { min?: number; max?: number },
  o?: LeafOptions<number>,
): Setting<number, Opt<D>> {
  const { min, max } = bounds;
  const fits = (v: unknown): v is number =>
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (kind === 'number' || Number.isInteger(v)) &&
    (min === undefined || v >= min) &&
    (max === undefined || v <= max);
  const schemaOpts = {
    ...(min !== undefined && { minimum: min }),
    ...(max !== undefined && { maximum: max }),
    ...described(description, def),
  };
  return leaf({
    kind,
    schema: kind === 'integer' ? Type.Integer(schemaOpts) : Type.Number(schemaOpts),
    def,
    parse: (raw) => (fits(raw) ? raw : INVALID),
    take: (v, w) => {
      if (fits(v)) return v;
      w.fail(
        `must be ${kind === 'integer' ? 'a whole number' : 'a number'}${min !== undefined || max !== undefined ? ` ${range(min, max)}` : ''}`,
      );
      return INVALID;
    },
    o,
  });
}

/** A whole number within bounds. */
export function int<D extends number | undefined = undefined>(
  description: string,
  def: D,
  bounds: { min?: number; max?: number },
  o?: LeafOptions<number>,
): Setting<number, Opt<D>> {
  return numeric('integer', description, def, bounds, o);
}

/** A number (fractions allowed) within bounds. */
export function num<D extends number | undefined = undefined>(
  description: string,
  def: D,
  bounds: { min?: number; max?: number },
  o?: LeafOptions<number>,
): Setting<number, Opt<D>> {
  return numeric('number', description, def, bounds, o);
}

/** One of a closed list of strings. */
export function oneOf<const T extends string, D extends T | undefined = undefined>(
  description: string,
  values: readonly T[],
  def?: D,
  o?: LeafOptions<T>,
): Setting<T, Opt<D>> {
  const is = (v: unknown): v is T => typeof v === 'string' && (values as readonly string[]).includes(v);
  return leaf({
    kind: 'enum',
    schema: Type.Unsafe<T>({ enum: [...values], ...described(description, def) }),
    def,
    parse: (raw) => (is(raw) ? raw : INVALID),
    take: (v, w) => (is(v) ? v : (w.fail(`must be one of ${values.join(', ')}, not ${show(v)}`), INVALID)),
    o,
  });
}

interface StringOptions<T> extends LeafOptions<T> {
  /** Applied after the format's parser (e.g. upper-casing a method). */
  map?: (value: T) => T;
}

/** A string; with a format, its parser checks and normalises it (and ajv knows the format by name). */
export function str<D extends string | undefined = undefined>(description: string, def?: D): Setting<string, Opt<D>>;
export function str<D extends string | undefined, T>(
  description: string,
  def: D,
  format: Format<T>,
  o?: StringOptions<T>,
): Setting<T, Opt<D>>;
export function str<D extends string | undefined, T>(
  description: string,
  def?: D,
  format?: Format<T>,
  o?: StringOptions<T>,
): Setting<T, Opt<D>> {
  const parse = (raw: unknown): T | Invalid => {
    if (typeof raw !== 'string') return INVALID;
    let v: T;
    if (format) {
      const r = format.parse(raw);
      if (!r.ok) return INVALID;
      v = r.value;
    } else {
      v = raw as T;
    }
    return o?.map ? o.map(v) : v;
  };
  return leaf({
    kind: 'string',
    schema: Type.Unsafe<string>({ type: 'string', ...(format && { format: format.name }), ...described(description, def) }),
    def,
    parse,
    take: (v, w) => {
      if (typeof v !== 'string') {
        w.fail(`must be a string, not ${show(v)}`);
        return INVALID;
      }
      if (format) {
        const r = format.parse(v);
        if (!r.ok) {
          w.fail(r.error);
          return INVALID;
        }
      }
      return parse(v);
    },
    o,
  });
}

/** Appended to the description of every duration and size (the reference states it once instead). */
export const DURATION_NOTE = 'A duration string: "250ms", "2s", "1m30s" (units ms, s, m, h).';

/** How a duration below `min` or above `max` (ms) is told. */
function durationBound(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * A duration: written "10s" in the file, a number of milliseconds for the engine (the engine key ends in
 * `Ms`, the file key is the same without it). With `unit: 's'` the engine gets whole seconds (key `…S`).
 * `min` is in ms: `min: 1` means "longer than 0s".
 */
export function duration<D extends string | undefined = undefined>(
  description: string,
  def?: D,
  o?: LeafOptions<number> & { min?: number; max?: number; unit?: 'ms' | 's' },
): Setting<number, Opt<D>> {
  const min = o?.min ?? 0;
  const max = o?.max;
  const factor = o?.unit === 's' ? 1000 : 1;
  const bound = (ms: number): string | undefined => {
    if (min > 0 && ms < min) return min === 1 ? 'must be longer than 0s' : `must be at least ${durationBound(min)}`;
    if (max !== undefined && ms > max) return `must be at most ${durationBound(max)}`;
    if (factor === 1000 && ms % 1000 !== 0) return `must be whole seconds (${ms}ms is not)`;
    return undefined;
  };
  const check: Check<number> = (v) => bound(v * factor) ?? o?.check?.(v);
  return leaf({
    kind: 'duration',
    schema: Type.Unsafe<string>({ type: 'string', format: DURATION.name, ...described(`${description} ${DURATION_NOTE}`, def) }),
    def,
    parse: (raw) => {
      if (typeof raw !== 'string') return INVALID;
      const r = parseDuration(raw);
      return r.ok ? r.value / factor : INVALID;
    },
    take: (v, w) => {
      if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
      w.fail(`must be a number of ${factor === 1 ? 'milliseconds' : 'seconds'} >= 0`);
      return INVALID;
    },
    fileKey: (k) => k.replace(factor === 1 ? /Ms$/ : /S$/, ''),
    o: { ...o, check },
  });
}

export const SIZE_NOTE = 'Bytes, or "512KiB", "16MiB", "1g" (binary units).';

/**
 * A size: "16KiB" (binary units) or a whole number of bytes in the file, bytes for the engine (the engine
 * key ends in `Bytes`, the file key in `Size`).
 */
export function size<D extends string | number | undefined = undefined>(
  description: string,
  def?: D,
  o?: LeafOptions<number> & { min?: number; max?: number },
): Setting<number, Opt<D>> {
  const min = o?.min ?? 0;
  const max = o?.max;
  const fits = (n: number) => Number.isInteger(n) && n >= min && (max === undefined || n <= max);
  return leaf({
    kind: 'size',
    schema: Type.Unsafe<string | number>({
      type: ['string', 'integer'],
      format: SIZE.name,
      minimum: min,
      ...(max !== undefined && { maximum: max }),
      ...described(`${description} ${SIZE_NOTE}`, def),
    }),
    def,
    parse: (raw) => {
      if (typeof raw === 'number') return fits(raw) ? raw : INVALID;
      if (typeof raw !== 'string') return INVALID;
      const r = parseSize(raw);
      return r.ok ? r.value : INVALID;
    },
    take: (v, w) => {
      if (typeof v === 'number' && fits(v)) return v;
      w.fail(`must be a whole number of bytes ${range(min, max)}`);
      return INVALID;
    },
    fileKey: (k) => k.replace(/Bytes$/, 'Size'),
    o: {
      ...o,
      // A string is only bounded after it is parsed: "1KiB" where 4KiB is the least.
      check: (v) => (fits(v) ? o?.check?.(v) : `must be ${range(min, max)} bytes (got ${v})`),
    },
  });
}

/**
 * A setting with its own schema and decoder (a string or a list, say). `decode` sees a value the schema
 * accepted, or anything when it did not (return INVALID then).
 */
export function custom<V, D = undefined>(spec: {
  schema: TSchema;
  def?: D;
  decode: (raw: unknown, w: Walk) => V | Invalid;
  accept?: (value: unknown, w: Walk) => V | Invalid;
  file?: string;
}): Setting<V, Opt<D>> {
  let defaultValue: V | undefined;
  if (spec.def !== undefined) {
    const d = spec.decode(spec.def, new Walk([], () => undefined));
    if (d === INVALID) throw new TypeError('settings: a default is not valid for its own schema');
    defaultValue = d;
  }
  return {
    kind: 'custom',
    schema: spec.schema,
    optional: (spec.def === undefined) as Opt<D>,
    required: false,
    omit: false,
    fileKey: spec.file !== undefined ? () => spec.file as string : same,
    defaultValue,
    decode: spec.decode,
    accept: spec.accept ?? ((v) => v as V),
  };
}

/** The file must give this key. */
export function required<V>(s: Setting<V, boolean>): Setting<V, false> {
  return { ...s, required: true, optional: false };
}

/** Read and checked from the file, but not part of the decoded value. */
export function fileOnly<V, O extends boolean>(s: Setting<V, O>): Setting<V, O> & { readonly omit: true } {
  return { ...s, omit: true };
}

interface ListOptions<V> {
  file?: string;
  /** The schema refuses a list with the same item twice. */
  uniqueItems?: boolean;
  /** Items equal after decoding are kept once (first wins). */
  dedupe?: boolean;
  /** A rule across the items (duplicates after normalisation, say); `w` is the list's path. */
  check?: (items: V[], w: Walk) => void;
}

/** A list of one kind of item. A default is written in the file's form. */
export function list<V, D extends readonly unknown[] | undefined = undefined>(
  description: string,
  item: Setting<V, boolean>,
  def?: D,
  o?: ListOptions<V>,
): Setting<V[], Opt<D>> {
  const each = (values: unknown, w: Walk, one: (s: Setting<V, boolean>, v: unknown, w: Walk) => V | Invalid): V[] | Invalid => {
    if (!Array.isArray(values)) return INVALID;
    let out: V[] = [];
    values.forEach((v, i) => {
      const d = one(item, v, w.at(i));
      if (d !== INVALID) out.push(d);
    });
    if (o?.dedupe) out = [...new Set(out)];
    o?.check?.(out, w);
    return out;
  };
  const decode = (raw: unknown, w: Walk) => each(raw, w, (s, v, at) => s.decode(v, at));
  let defaultValue: V[] | undefined;
  if (def !== undefined) {
    const d = decode(def, new Walk([], () => undefined));
    if (d === INVALID) throw new TypeError(`settings: the default of "${description}" is not valid for its own schema`);
    defaultValue = d;
  }
  return {
    kind: 'list',
    schema: Type.Unsafe<unknown[]>({
      type: 'array',
      items: item.schema,
      ...(o?.uniqueItems && { uniqueItems: true }),
      ...described(description, def === undefined ? undefined : [...def]),
    }),
    optional: (def === undefined) as Opt<D>,
    required: false,
    omit: false,
    fileKey: o?.file !== undefined ? () => o.file as string : same,
    defaultValue,
    item,
    decode,
    accept: (value, w) => {
      if (!Array.isArray(value)) {
        w.fail(`must be a list, not ${show(value)}`);
        return INVALID;
      }
      return each(value, w, (s, v, at) => s.accept(v, at));
    },
  };
}

/**
 * A mapping of names to one kind of value (services by name, per-zone upstreams). `key` checks (and may
 * normalise) the names. The default is an empty mapping.
 */
export function map<V>(
  description: string,
  value: Setting<V, boolean>,
  o?: { key?: Format; file?: string },
): Setting<Record<string, V>, false> {
  const keyFormat = o?.key;
  const each = (values: unknown, w: Walk, one: (v: unknown, at: Walk) => V | Invalid, tellKeys: boolean): Record<string, V> | Invalid => {
    if (!isObject(values)) return INVALID;
    const out: Record<string, V> = {};
    for (const [k, v] of Object.entries(values)) {
      let key = k;
      if (keyFormat) {
        const r = keyFormat.parse(k);
        if (!r.ok) {
          if (tellKeys) w.fail(r.error, [k], 'key');
          continue;
        }
        key = r.value;
      }
      const d = one(v, w.at(k));
      if (d !== INVALID) out[key] = d;
    }
    return out;
  };
  return {
    kind: 'map',
    schema: Type.Unsafe<Record<string, unknown>>({
      type: 'object',
      description,
      ...(keyFormat && { propertyNames: { type: 'string', format: keyFormat.name } }),
      additionalProperties: value.schema,
      default: {},
    }),
    optional: false,
    required: false,
    omit: false,
    fileKey: o?.file !== undefined ? () => o.file as string : same,
    defaultValue: {},
    item: value,
    // The schema reports a bad name (propertyNames); decoding skips it quietly.
    decode: (raw, w) => each(raw, w, (v, at) => value.decode(v, at), false),
    accept: (v, w) => {
      if (!isObject(v)) {
        w.fail(`must be a mapping, not ${show(v)}`);
        return INVALID;
      }
      return each(v, w, (x, at) => value.accept(x, at), true);
    },
  };
}

interface SectionOptions<V> {
  file?: string;
  /** Rules across the keys, on the decoded value; `raw` is what was given (the file's mapping, or an engine's partial options). */
  check?: (value: V, w: Walk, raw: Record<string, unknown>) => void;
}

function build<D extends Defs, O extends boolean>(
  description: string,
  defs: D,
  optional: O,
  o?: SectionOptions<Decoded<D>>,
): Setting<Decoded<D>, O> {
  const properties: Record<string, TSchema> = {};
  const keys: Array<[engineKey: string, fileKey: string, setting: Setting]> = [];
  for (const [k, s] of Object.entries(defs)) {
    const fk = s.fileKey(k);
    if (properties[fk]) throw new TypeError(`settings: two settings are written "${fk}" in the file`);
    properties[fk] = s.required ? s.schema : Type.Optional(s.schema);
    keys.push([k, fk, s]);
  }
  const quiet = new Walk([], () => undefined);
  const setting: Setting<Decoded<D>, O> = {
    kind: 'section',
    schema: Type.Object(properties, { description, additionalProperties: false }),
    optional,
    required: false,
    omit: false,
    fileKey: o?.file !== undefined ? () => o.file as string : same,
    defaultValue: undefined,
    children: defs,
    decode(raw, w) {
      if (!isObject(raw)) return INVALID;
      const out: Record<string, unknown> = {};
      for (const [k, fk, s] of keys) {
        const r = raw[fk];
        let v = r === undefined ? INVALID : s.decode(r, w.at(fk));
        if (v === INVALID) v = s.defaultValue;
        if (v !== undefined && !s.omit) out[k] = v;
      }
      o?.check?.(out as Decoded<D>, w, raw);
      return out as Decoded<D>;
    },
    accept(value, w) {
      if (!isObject(value)) {
        w.fail(`must be a mapping, not ${show(value)}`);
        return INVALID;
      }
      for (const k of Object.keys(value)) if (!Object.prototype.hasOwnProperty.call(defs, k)) w.fail('unknown option', [k]);
      const out: Record<string, unknown> = {};
      for (const [k, , s] of keys) {
        const given = value[k];
        let v = given === undefined ? INVALID : s.accept(given, w.at(k));
        if (v === INVALID) v = s.defaultValue;
        if (v !== undefined && !s.omit) out[k] = v;
      }
      o?.check?.(out as Decoded<D>, w, value);
      return out as Decoded<D>;
    },
  };
  if (!optional) {
    const d = setting.decode({}, quiet);
    (setting as { defaultValue: unknown }).defaultValue = d === INVALID ? undefined : deepFreeze(d);
  }
  return setting;
}

/**
 * A closed mapping of settings keyed by the engine's names (unknown keys are schema errors). Always
 * present once decoded: a file without it gets every default.
 */
export function section<D extends Defs>(description: string, defs: D, o?: SectionOptions<Decoded<D>>): Setting<Decoded<D>, false> {
  return build(description, defs, false, o);
}

/** A section that is absent unless the file writes it (a feed's settings, a route's timeouts). */
export function optionalSection<D extends Defs>(description: string, defs: D, o?: SectionOptions<Decoded<D>>): Setting<Decoded<D>, true> {
  return build(description, defs, true, o);
}

/** The file key of every setting of a section, by engine key. */
export function fileKeys(s: Setting): Record<string, string> {
  return Object.fromEntries(Object.entries(s.children ?? {}).map(([k, c]) => [k, c.fileKey(k)]));
}

/** `['healthCheck', 'rise']` → `healthCheck.rise`, `['acceptProxyFrom', 0]` → `acceptProxyFrom[0]`. */
export function pathText(path: readonly PathSegment[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let v = root;
  for (const p of path) v = v !== null && typeof v === 'object' ? (v as Record<PathSegment, unknown>)[p] : undefined;
  return v;
}

/**
 * An engine's options from a partial value given in code (tests, benchmarks, the composition root):
 * defaults filled (nested sections too), every value checked against its setting, normalised, frozen.
 * A bad value is a TypeError naming it: `l4 option healthCheck.rise = 0: must be a whole number 1..100`.
 */
export function resolveSettings<V>(s: Setting<V, boolean>, given: unknown, label: string): Readonly<V> {
  const problems: string[] = [];
  const input = given ?? {};
  const w = new Walk([], (path, message) => {
    const v = valueAt(input, path);
    problems.push(`${label} ${pathText(path)}${v === undefined ? '' : ` = ${JSON.stringify(v)}`}: ${message}`);
  });
  const v = s.accept(input, w);
  if (problems.length > 0 || v === INVALID) throw new TypeError(problems.join('; ') || `${label}: not valid`);
  return deepFreeze(v);
}

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
