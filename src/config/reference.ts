/**
 * The config reference (docs/config.md), written from the definitions: every key of the file with its
 * type, default and description, one table per top-level section. `npm run docs:config` writes it;
 * test/config/reference.test.ts fails when the file in the repository is not what this renders.
 */
import { DURATION_NOTE, SIZE_NOTE, type Setting } from '../model/settings.js';
import { configSettings } from './schema.js';

export interface ReferenceRow {
  /** The key's path in the file: `l4.healthCheck.interval`, `services.<name>.endpoints[].port`. */
  path: string;
  /** The engine's name for it, when the file writes it otherwise (`headerTimeout` → `headerTimeoutMs`). */
  engineKey: string | undefined;
  type: string;
  /** The default as the file writes it, or undefined when there is none. */
  default: unknown;
  required: boolean;
  description: string;
}

type Schema = Record<string, unknown>;

function typeOf(s: Setting): string {
  const schema = s.schema as Schema;
  const bounds = (): string => {
    const min = schema.minimum as number | undefined;
    const max = schema.maximum as number | undefined;
    if (min !== undefined && max !== undefined) return ` ${min}..${max}`;
    if (min !== undefined) return ` ≥ ${min}`;
    if (max !== undefined) return ` ≤ ${max}`;
    return '';
  };
  switch (s.kind) {
    case 'boolean':
      return 'boolean';
    case 'integer':
      return `integer${bounds()}`;
    case 'number':
      return `number${bounds()}`;
    case 'enum':
      return (schema.enum as string[]).join(' \\| ');
    case 'duration':
      return 'duration';
    case 'size':
      return schema.minimum === 0 && schema.maximum === undefined ? 'size' : `size${bounds()}`;
    case 'string':
      return typeof schema.format === 'string' ? `string (${schema.format})` : 'string';
    case 'list':
      return s.item && s.item.kind !== 'section' ? `list of ${typeOf(s.item)}` : 'list';
    case 'map':
      return s.item && s.item.kind !== 'section' ? `mapping of ${typeOf(s.item)}` : 'mapping by name';
    case 'section':
      return 'mapping';
    default:
      return Array.isArray(schema.oneOf) ? 'string or list' : typeof schema.type === 'string' ? schema.type : 'value';
  }
}

function walk(s: Setting, path: string, engineKey: string | undefined, rows: ReferenceRow[]): void {
  rows.push({
    path,
    engineKey,
    type: typeOf(s),
    default: (s.schema as Schema).default,
    required: s.required,
    // The unit notes every duration and size carries are said once, above the tables.
    description: String((s.schema as Schema).description ?? '')
      .replace(` ${DURATION_NOTE}`, '')
      .replace(` ${SIZE_NOTE}`, ''),
  });
  if (s.kind === 'section') {
    for (const [k, c] of Object.entries(s.children ?? {})) {
      const fk = c.fileKey(k);
      walk(c, `${path}.${fk}`, fk === k ? undefined : k, rows);
    }
  } else if (s.item?.kind === 'section') {
    const base = s.kind === 'list' ? `${path}[]` : `${path}.<name>`;
    for (const [k, c] of Object.entries(s.item.children ?? {})) {
      const fk = c.fileKey(k);
      walk(c, `${base}.${fk}`, fk === k ? undefined : k, rows);
    }
  }
}

/** Every key of the file, in file order, sections before their keys. */
export function referenceRows(): ReferenceRow[] {
  const rows: ReferenceRow[] = [];
  for (const [k, c] of Object.entries(configSettings.children ?? {})) walk(c, c.fileKey(k), undefined, rows);
  return rows;
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function shownDefault(r: ReferenceRow): string {
  if (r.required) return 'required';
  if (r.default === undefined) return '—';
  if (typeof r.default === 'object' && r.default !== null && Object.keys(r.default).length === 0)
    return Array.isArray(r.default) ? '`[]`' : '`{}`';
  return `\`${cell(typeof r.default === 'string' ? r.default : JSON.stringify(r.default))}\``;
}

/** docs/config.md, as Markdown. */
export function renderConfigReference(): string {
  const out: string[] = [
    '# Config reference',
    '',
    '<!-- Written by `npm run docs:config` from the definitions (src/config/schema.ts, src/l7/settings.ts, src/l4/settings.ts, src/dns/settings.ts). Do not edit by hand: test/config/reference.test.ts fails when this file is stale. -->',
    '',
    'Every key of the config file (`config/portico.yaml`, `--config FILE`, `PORTICO_CONFIG`). Every key is optional unless marked',
    '*required*; a missing one takes its default, and an empty file is a valid all-defaults config. Unknown keys are errors.',
    'The same definitions give the JSON Schema the api serves at `GET /v1/config/schema`.',
    '',
    '- **duration**: a string with units, `250ms`, `2s`, `1m30s`, `1h` (ms, s, m, h).',
    '- **size**: a whole number of bytes, or a string with binary units: `512KiB`, `16MiB`, `1g`.',
    '- **engine key**: the name the engine reads the value under (the L7, L4 and DNS engines take their sections as decoded:',
    '  durations in milliseconds as `…Ms` or whole seconds as `…S`, sizes in bytes as `…Bytes`).',
    '',
  ];
  const rows = referenceRows();
  const top = Object.entries(configSettings.children ?? {}).map(([k, c]) => [c.fileKey(k), c] as const);
  const scalars = top.filter(([, c]) => c.kind !== 'section' && c.kind !== 'map' && c.kind !== 'list');
  out.push('## Top level', '', '| key | type | default | description |', '| --- | --- | --- | --- |');
  for (const r of rows.filter((r) => scalars.some(([k]) => k === r.path))) {
    out.push(`| \`${r.path}\` | ${r.type} | ${shownDefault(r)} | ${cell(r.description)} |`);
  }
  out.push('');
  for (const [section] of top) {
    if (scalars.some(([k]) => k === section)) continue;
    const own = rows.filter((r) => r.path === section || r.path.startsWith(`${section}.`) || r.path.startsWith(`${section}[]`));
    const head = own[0];
    if (!head) continue;
    out.push(`## \`${section}\``, '', cell(head.description), '');
    const keys = own.length > 1 ? own.slice(1) : own;
    out.push('| key | type | default | description |', '| --- | --- | --- | --- |');
    for (const r of keys) {
      const engine = r.engineKey !== undefined ? ` (engine key \`${r.engineKey}\`)` : '';
      out.push(`| \`${r.path}\` | ${r.type} | ${shownDefault(r)} | ${cell(r.description)}${engine} |`);
    }
    out.push('');
  }
  return out.join('\n');
}
