/** The schema the api serves: closed everywhere, documented everywhere, a valid JSON Schema. */
import Ajv from 'ajv';
import t from 'tap';
import { configSchema, DEFAULT_CONFIG } from '../../src/config/index.js';
import type { JsonSchema } from '../../src/config/index.js';

function walk(schema: JsonSchema, path: string, visit: (s: JsonSchema, path: string) => void): void {
  visit(schema, path);
  const props = schema.properties as Record<string, JsonSchema> | undefined;
  for (const [k, v] of Object.entries(props ?? {})) walk(v, `${path}.${k}`, visit);
  if (typeof schema.additionalProperties === 'object') walk(schema.additionalProperties as JsonSchema, `${path}.*`, visit);
  if (typeof schema.items === 'object') walk(schema.items as JsonSchema, `${path}[]`, visit);
}

t.test('is a valid draft-07 schema and plain JSON', async (t) => {
  const ajv = new Ajv({ strict: false });
  t.ok(ajv.validateSchema(configSchema), JSON.stringify(ajv.errors));
  t.same(JSON.parse(JSON.stringify(configSchema)), configSchema, 'serialisable as is');
});

t.test('every object is closed and every property described', async (t) => {
  let objects = 0;
  walk(configSchema, '$', (s, path) => {
    if (s.type === 'object' && s.properties) {
      objects++;
      t.equal(s.additionalProperties, false, `${path} is closed`);
    }
    if (s.type === 'object' && !s.properties) {
      t.type(s.additionalProperties, 'object', `${path} is a map with typed values`);
    }
    t.type(s.description, 'string', `${path} has a description`);
  });
  t.ok(objects > 10);
});

t.test('the documented top-level sections', async (t) => {
  t.same(Object.keys(configSchema.properties as object), [
    'data',
    'store',
    'workers',
    'api',
    'entrypoints',
    'dns',
    'l7',
    'l4',
    'overlay',
    'marathon',
    'consul',
    'apps',
    'vips',
    'services',
    'routes',
  ]);
});

t.test('schema defaults agree with DEFAULT_CONFIG', async (t) => {
  const p = configSchema.properties as Record<string, JsonSchema & { properties?: Record<string, JsonSchema> }>;
  t.equal(p.data?.default, DEFAULT_CONFIG.data);
  t.equal(p.store?.default, DEFAULT_CONFIG.store);
  t.equal(p.api?.properties?.listen?.default, DEFAULT_CONFIG.api.listen);
  t.equal(p.dns?.properties?.listen?.default, DEFAULT_CONFIG.dns.listen);
  t.same(p.dns?.properties?.allowRecursionFrom?.default, DEFAULT_CONFIG.dns.allowRecursionFrom);
  t.equal(p.vips?.properties?.listen?.default, DEFAULT_CONFIG.vips.listen);
  t.equal(p.l7?.properties?.accessLog?.default, DEFAULT_CONFIG.l7.accessLog);
  t.equal(DEFAULT_CONFIG.l7.headerTimeoutMs, 10_000);
  t.equal(DEFAULT_CONFIG.l7.maxHeaderBytes, 16_384);
});

t.test('l7 settings are parsed and checked', async (t) => {
  const { parseConfigText } = await import('../../src/config/index.js');
  const cfg = parseConfigText('l7: { headerTimeout: 2s, retries: 0, maxHeaderSize: 32KiB, accessLog: false }\n');
  t.equal(cfg.l7.headerTimeoutMs, 2000);
  t.equal(cfg.l7.retries, 0);
  t.equal(cfg.l7.maxHeaderBytes, 32768);
  t.equal(cfg.l7.accessLog, false);
  t.equal(parseConfigText('l7: { authHashesPerSecond: 50 }\n').l7.authHashesPerSecond, 50, 'the basicAuth hashing budget is settable');
  t.equal(DEFAULT_CONFIG.l7.authHashesPerSecond, 20, 'and 20 by default');
  t.throws(() => parseConfigText('l7: { authHashesPerSecond: 0 }\n'), /l7\.authHashesPerSecond/);
  t.throws(() => parseConfigText('l7: { retries: 99 }\n'), /l7\.retries/);
  t.throws(() => parseConfigText('l7: { headerTimeout: soon }\n'), /l7\.headerTimeout/);
});

t.test('dns.zoneUpstreams', async (t) => {
  const { parseConfigText } = await import('../../src/config/index.js');
  const cfg = parseConfigText('dns: { zoneUpstreams: { corp.example: [192.0.2.53, "192.0.2.54:5353"] } }\n');
  t.same(cfg.dns.zoneUpstreams, { 'corp.example': ['192.0.2.53:53', '192.0.2.54:5353'] });
  t.throws(() => parseConfigText('dns: { zoneUpstreams: { corp.example: [not-an-ip] } }\n'), /dns\.zoneUpstreams/);
});
