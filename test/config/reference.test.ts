/** docs/config.md is written from the definitions (`npm run docs:config`); it must say what they say now. */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import t from 'tap';
import { configSchema } from '../../src/config/index.js';
import { referenceRows, renderConfigReference } from '../../src/config/reference.js';

t.test('docs/config.md is what npm run docs:config writes', async (t) => {
  const file = resolve(__dirname, '../../docs/config.md');
  const shipped = readFileSync(file, 'utf8');
  t.ok(shipped === renderConfigReference(), 'docs/config.md is stale: run npm run docs:config and commit it');
});

t.test('the reference lists every key of the schema, with a type and a description', async (t) => {
  const rows = referenceRows();
  const byPath = new Map(rows.map((r) => [r.path, r]));
  const paths: string[] = [];
  const walk = (schema: Record<string, unknown>, path: string) => {
    const props = schema.properties as Record<string, Record<string, unknown>> | undefined;
    if (schema.type === 'object' && props) {
      for (const [k, v] of Object.entries(props)) {
        const p = path ? `${path}.${k}` : k;
        paths.push(p);
        walk(v, p);
      }
    } else if (schema.type === 'object' && typeof schema.additionalProperties === 'object') {
      walk(schema.additionalProperties as Record<string, unknown>, `${path}.<name>`);
    } else if (schema.type === 'array' && typeof schema.items === 'object') {
      walk(schema.items as Record<string, unknown>, `${path}[]`);
    }
  };
  walk(configSchema, '');
  t.ok(paths.length > 150, `${paths.length} keys`);
  for (const p of paths) {
    const row = byPath.get(p);
    t.ok(row && row.type !== '' && row.description !== '', `${p} is documented`);
  }
  const text = renderConfigReference();
  t.match(text, '| `l4.acceptProxyFrom` | list of string (cidr) | `[]` |', 'a row as an operator reads it');
  t.match(text, '| `l7.headerTimeout` | duration | `10s` |');
  t.match(text, '(engine key `headerTimeoutMs`)');
});
