/**
 * The built-in resources of the admin api, registered through the same `route()` seam every area
 * uses: health, the routing table and its history, providers and planes, config dry runs, the OpenAPI
 * document and metrics.
 */
import path from 'node:path';
import { configSchema, configToSnapshot, parseConfigText } from '../config/index.js';
import { ErrorCodes, ValidationError } from '../model/errors.js';
import type { Snapshot } from '../model/types.js';
import { schemaRef as ref } from './openapi.js';
import { ApiError, badRequest, intParam, mediaType, notFound, Reply } from './router.js';
import type { ApiDeps, JsonSchema, Readiness, RouteRegistrar, TableReader } from './types.js';

/**
 * A config posted for validation is previewed as the file provider's next snapshot. These must match
 * what the composition root gives the file provider, or the diff would compare against the wrong input.
 */
export const FILE_PROVIDER = 'file';
export const FILE_PRIORITY = 100;

/** Media types `POST /v1/config/validate` accepts; the parser reads YAML, and JSON is YAML. */
export const CONFIG_MEDIA_TYPES = ['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'];

const versionParam = (name: string, description: string, required = false) => ({
  name,
  in: 'query' as const,
  required,
  description,
  schema: { type: 'integer', minimum: 0 },
});

/** The admin api as its own resources need it: add routes, and read the OpenAPI document of all of them. */
export interface CoreApi {
  route: RouteRegistrar;
  openApi(): Record<string, unknown>;
}

export function registerCoreResources(api: CoreApi, deps: ApiDeps): void {
  const agg = deps.tables;
  const ready = deps.ready ?? (() => defaultReadiness(deps));

  api.route('GET', '/healthz', () => ({ status: 'ok' }), {
    auth: false,
    doc: {
      summary: 'Liveness: the process is up and serving http',
      responses: { '200': { description: 'Alive', schema: { type: 'object', properties: { status: { const: 'ok' } } } } },
    },
  });

  api.route(
    'GET',
    '/readyz',
    () => {
      const r = ready();
      return Reply.json(r.ready ? 200 : 503, { ready: r.ready, degraded: r.degraded ?? r.reasons.length > 0, reasons: r.reasons });
    },
    {
      auth: false,
      doc: {
        summary: 'Readiness: a routing table is published and providers are healthy',
        responses: {
          '200': { description: 'Ready', schema: readinessSchema },
          '503': { description: 'Not ready, with the reasons', schema: readinessSchema },
        },
      },
    },
  );

  api.route(
    'GET',
    '/v1/table',
    (ctx) => {
      const version = intParam(ctx.query, 'version');
      if (version === undefined) return agg.current();
      return agg.get(version) ?? notInHistory(agg, version);
    },
    {
      doc: {
        summary: 'The current routing table, or a past one from history',
        parameters: [versionParam('version', 'A past version; 404 once it has left the bounded history')],
        responses: {
          '200': { description: 'The table', schema: ref('RoutingTable') },
          '404': { description: 'Version not in history', schema: ref('Error') },
        },
      },
    },
  );

  api.route('GET', '/v1/table/versions', () => ({ versions: agg.versions() }), {
    doc: {
      summary: 'The versions kept in history, oldest first',
      responses: {
        '200': {
          description: 'Versions',
          schema: { type: 'object', required: ['versions'], properties: { versions: { type: 'array', items: ref('TableVersionInfo') } } },
        },
      },
    },
  });

  api.route(
    'GET',
    '/v1/table/diff',
    (ctx) => {
      const from = intParam(ctx.query, 'from');
      if (from === undefined) throw badRequest('query parameter "from" is required');
      const to = intParam(ctx.query, 'to') ?? agg.current().version;
      return agg.diff(from, to) ?? notInHistory(agg, agg.get(from) ? to : from);
    },
    {
      doc: {
        summary: 'What changed between two table versions',
        parameters: [versionParam('from', 'Older version', true), versionParam('to', 'Newer version; default: the current one')],
        responses: {
          '200': { description: 'The diff', schema: ref('TableDiff') },
          '400': { description: '`from` missing, or a version is not a number', schema: ref('Error') },
          '404': { description: 'A version is not in history', schema: ref('Error') },
        },
      },
    },
  );

  api.route('GET', '/v1/providers', () => ({ providers: deps.providers() }), {
    doc: {
      summary: 'Feeds of endpoints: state, priority, last update and last error',
      responses: {
        '200': {
          description: 'Providers',
          schema: { type: 'object', required: ['providers'], properties: { providers: { type: 'array', items: ref('ProviderStatus') } } },
        },
      },
    },
  });

  api.route('GET', '/v1/planes', () => ({ planes: deps.planes() }), {
    doc: {
      summary: 'Data planes: state, listeners and the table version each serves',
      responses: {
        '200': {
          description: 'Planes',
          schema: { type: 'object', required: ['planes'], properties: { planes: { type: 'array', items: ref('PlaneStatus') } } },
        },
      },
    },
  });

  api.route(
    'POST',
    '/v1/config/validate',
    async (ctx) => {
      const type = mediaType(ctx.req);
      if (type === undefined || !CONFIG_MEDIA_TYPES.includes(type)) {
        throw new ApiError(
          ErrorCodes.API_BAD_REQUEST,
          `send the config as ${CONFIG_MEDIA_TYPES.join(', ')} (got ${type ?? 'no content-type'})`,
          415,
        );
      }
      const text = await ctx.text();
      const running = deps.config?.().file;
      // Relative paths (certificate files) resolve as they would for the config the daemon runs on.
      const baseDir = running ? path.dirname(path.resolve(running)) : process.cwd();
      let snapshot: Snapshot;
      try {
        snapshot = configToSnapshot(parseConfigText(text, { baseDir }), FILE_PROVIDER);
      } catch (err) {
        if (err instanceof ValidationError) return Reply.json(422, { valid: false, issues: err.issues });
        throw err;
      }
      const { table, diff } = agg.preview(FILE_PROVIDER, FILE_PRIORITY, snapshot);
      return {
        valid: true,
        diff,
        conflicts: table.conflicts,
        warnings: table.warnings,
        table: { services: table.services.size, routes: table.routes.length },
      };
    },
    {
      doc: {
        summary: 'Dry run: validate a config file and show the diff it would make (nothing is changed)',
        requestBody: {
          required: true,
          description: 'The config file, YAML or JSON',
          content: Object.fromEntries(CONFIG_MEDIA_TYPES.map((t) => [t, { schema: { type: 'string' } }])),
        },
        responses: {
          '200': { description: 'Valid; what it would change', schema: validResultSchema },
          '415': { description: 'Unsupported content-type', schema: ref('Error') },
          '422': { description: 'Invalid; every problem with its path and position', schema: invalidResultSchema },
        },
      },
    },
  );

  api.route('GET', '/v1/config/schema', () => configSchema, {
    doc: {
      summary: 'The JSON Schema config files are validated against',
      responses: { '200': { description: 'JSON Schema 2020-12', schema: { type: 'object' } } },
    },
  });

  api.route('GET', '/v1/openapi.json', () => api.openApi(), {
    doc: { summary: 'This document', responses: { '200': { description: 'OpenAPI 3.1', schema: { type: 'object' } } } },
  });

  const exposition = deps.metrics ?? (async () => ({ contentType: deps.registry.contentType, text: await deps.registry.metrics() }));
  api.route(
    'GET',
    '/metrics',
    async () => {
      const m = await exposition();
      return Reply.raw(200, m.contentType, m.text);
    },
    {
      auth: !deps.metricsPublic,
      doc: {
        summary: 'Prometheus metrics',
        tags: ['metrics'],
        responses: { '200': { description: 'Prometheus text exposition', contentType: 'text/plain', schema: { type: 'string' } } },
      },
    },
  );
}

/** Ready once a table is published (version > 0) and no provider is in `error`. */
export function defaultReadiness(deps: Pick<ApiDeps, 'tables' | 'providers'>): Readiness {
  const reasons: string[] = [];
  if (deps.tables.current().version === 0) reasons.push('no routing table yet');
  for (const p of deps.providers()) {
    if (p.state === 'error') reasons.push(`provider ${p.name}: error${p.lastError ? ` (${p.lastError})` : ''}`);
  }
  return { ready: reasons.length === 0, reasons };
}

function notInHistory(agg: TableReader, version: number): never {
  const kept = agg.versions();
  const range = kept.length ? `${kept[0]?.version}..${kept[kept.length - 1]?.version}` : 'none';
  throw notFound(`table version ${version} is not in history (kept: ${range})`);
}

const readinessSchema: JsonSchema = {
  type: 'object',
  required: ['ready', 'reasons'],
  properties: {
    ready: { type: 'boolean' },
    degraded: { type: 'boolean', description: 'Serving, with something wrong (see reasons)' },
    reasons: { type: 'array', items: { type: 'string' } },
  },
};

const validResultSchema: JsonSchema = {
  type: 'object',
  required: ['valid', 'diff', 'conflicts', 'table'],
  properties: {
    valid: { const: true },
    diff: ref('TableDiff'),
    conflicts: { type: 'array', items: ref('Conflict') },
    warnings: { type: 'array', items: ref('TableWarning') },
    table: { type: 'object', properties: { services: { type: 'integer' }, routes: { type: 'integer' } } },
  },
};

const invalidResultSchema: JsonSchema = {
  type: 'object',
  required: ['valid', 'issues'],
  properties: { valid: { const: false }, issues: { type: 'array', items: ref('ValidationIssue') } },
};
