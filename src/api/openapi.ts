/**
 * The OpenAPI 3.1 document, generated from the router's registrations so that it cannot drift from what
 * is served: a route registered without a `doc` still appears (with a stub summary), and one that is not
 * registered cannot appear.
 */
import type { RouteEntry } from './router.js';
import type { JsonSchema } from './types.js';

export const SECURITY_SCHEME = 'bearerAuth';

/** A reference to one of `schemas`, for route docs. */
export const schemaRef = (name: keyof typeof schemas & string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const stringList: JsonSchema = { type: 'array', items: { type: 'string' } };

/**
 * Shapes the built-in resources return. Kept to what clients rely on; tables are open objects
 * (`additionalProperties` allowed) because the routing model grows.
 */
export const schemas: Record<string, JsonSchema> = {
  Error: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: {
          code: { type: 'string', examples: ['PORTICO_API_NOT_FOUND'] },
          message: { type: 'string' },
          issues: { type: 'array', items: ref('ValidationIssue') },
          requestId: { type: 'string', description: 'On 500s: quote it to find the logged cause.' },
        },
      },
    },
  },
  ValidationIssue: {
    type: 'object',
    required: ['path', 'message'],
    properties: { path: { type: 'string' }, message: { type: 'string' }, line: { type: 'integer' }, column: { type: 'integer' } },
  },
  DiffSection: {
    type: 'object',
    required: ['added', 'removed', 'changed'],
    properties: { added: stringList, removed: stringList, changed: stringList },
  },
  TableDiff: {
    type: 'object',
    required: ['from', 'to', 'services', 'routes', 'entrypoints', 'vips', 'empty'],
    properties: {
      from: { type: 'integer' },
      to: { type: 'integer' },
      services: ref('DiffSection'),
      routes: ref('DiffSection'),
      entrypoints: ref('DiffSection'),
      vips: ref('DiffSection'),
      empty: { type: 'boolean' },
    },
  },
  TableVersionInfo: {
    type: 'object',
    required: ['version', 'hash', 'createdAt', 'services', 'routes', 'endpoints', 'conflicts'],
    properties: {
      version: { type: 'integer' },
      hash: { type: 'string' },
      createdAt: { type: 'string', format: 'date-time' },
      services: { type: 'integer' },
      routes: { type: 'integer' },
      endpoints: { type: 'integer' },
      conflicts: { type: 'integer' },
    },
  },
  Conflict: {
    type: 'object',
    required: ['kind', 'key', 'winner', 'losers', 'message'],
    properties: {
      kind: { enum: ['route', 'vip', 'dns', 'entrypoint'] },
      key: { type: 'string' },
      winner: { type: 'string' },
      losers: stringList,
      message: { type: 'string' },
    },
  },
  TableWarning: {
    type: 'object',
    required: ['provider', 'subject', 'message'],
    properties: { provider: { type: 'string' }, subject: { type: 'string' }, message: { type: 'string' } },
  },
  RoutingTable: {
    type: 'object',
    required: ['version', 'hash', 'createdAt', 'services', 'routes', 'entrypoints', 'vips', 'conflicts', 'sources'],
    properties: {
      version: { type: 'integer' },
      hash: { type: 'string' },
      createdAt: { type: 'string', format: 'date-time' },
      services: { type: 'object', description: 'By service id `<name>@<provider>`.', additionalProperties: { type: 'object' } },
      routes: { type: 'array', items: { type: 'object' } },
      entrypoints: { type: 'object', additionalProperties: { type: 'object' } },
      vips: { type: 'array', items: { type: 'object' } },
      conflicts: { type: 'array', items: ref('Conflict') },
      warnings: { type: 'array', items: ref('TableWarning') },
      sources: { type: 'object', additionalProperties: { type: 'string' } },
    },
  },
  ProviderStatus: {
    type: 'object',
    required: ['name', 'priority', 'state'],
    properties: {
      name: { type: 'string' },
      priority: { type: 'integer' },
      state: { enum: ['starting', 'ok', 'degraded', 'error', 'stopped'] },
      lastUpdate: { type: 'string', format: 'date-time' },
      lastError: { type: 'string' },
      lastErrorAt: { type: 'string', format: 'date-time' },
      details: { type: 'object' },
    },
  },
  PlaneStatus: {
    type: 'object',
    required: ['name', 'state', 'listeners', 'tableVersion'],
    properties: {
      name: { type: 'string' },
      state: { enum: ['starting', 'serving', 'error', 'stopped'] },
      listeners: stringList,
      tableVersion: { type: 'integer' },
      error: { type: 'string' },
    },
  },
};

export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

/** `/v1/certs/:name` → `/v1/certs/{name}` */
export function openApiPath(pattern: string): string {
  return pattern.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

/** The document for `routes`, in registration order. */
export function buildOpenApi(routes: readonly RouteEntry[], info: OpenApiInfo): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const p = openApiPath(r.pattern);
    const item = (paths[p] ??= {});
    item[r.method.toLowerCase()] = operation(r);
  }
  return {
    openapi: '3.1.0',
    info,
    // Every operation needs the token unless it says otherwise (`security: []`).
    security: [{ [SECURITY_SCHEME]: [] }],
    paths,
    components: {
      securitySchemes: {
        [SECURITY_SCHEME]: { type: 'http', scheme: 'bearer', description: 'The token in `<data>/api-token`.' },
      },
      schemas,
      responses: {
        Unauthorized: { description: 'Missing or wrong bearer token.', content: { 'application/json': { schema: ref('Error') } } },
        Error: {
          description: 'An error; `code` is stable, `message` is for people.',
          content: { 'application/json': { schema: ref('Error') } },
        },
      },
    },
  };
}

function operation(r: RouteEntry): Record<string, unknown> {
  const doc = r.doc;
  const op: Record<string, unknown> = {
    operationId: doc?.operationId ?? operationId(r.method, r.pattern),
    summary: doc?.summary ?? `${r.method} ${r.pattern}`,
  };
  if (doc?.description) op.description = doc.description;
  const tag = doc?.tags ?? defaultTag(r.pattern);
  if (tag.length) op.tags = tag;
  const parameters = [
    ...r.params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
    ...(doc?.parameters ?? []),
  ];
  if (parameters.length) op.parameters = parameters;
  if (doc?.requestBody) op.requestBody = doc.requestBody;

  const responses: Record<string, unknown> = {};
  for (const [status, res] of Object.entries(doc?.responses ?? { '200': { description: 'OK' } })) {
    responses[status] = res.schema
      ? { description: res.description, content: { [res.contentType ?? 'application/json']: { schema: res.schema } } }
      : { description: res.description };
  }
  if (r.auth) responses['401'] ??= { $ref: '#/components/responses/Unauthorized' };
  else op.security = [];
  responses.default ??= { $ref: '#/components/responses/Error' };
  op.responses = responses;
  return op;
}

/** `GET /v1/table/diff` → `getV1TableDiff`; `/v1/certs/:name` → `getV1CertsByName`. */
function operationId(method: string, pattern: string): string {
  const words = pattern
    .split('/')
    .filter(Boolean)
    .map((seg) => (seg.startsWith(':') ? `by_${seg.slice(1)}` : seg))
    .flatMap((seg) => seg.split(/[^A-Za-z0-9]+/))
    .filter(Boolean);
  return [method.toLowerCase(), ...words.map((w) => w.charAt(0).toUpperCase() + w.slice(1))].join('');
}

/** `/v1/table/diff` → ['table']; `/healthz` → ['health']. */
function defaultTag(pattern: string): string[] {
  const segs = pattern.split('/').filter(Boolean);
  const first = segs[0] === 'v1' ? segs[1] : segs[0];
  if (!first) return [];
  return [first === 'healthz' || first === 'readyz' ? 'health' : first.replace(/\.json$/, '')];
}
