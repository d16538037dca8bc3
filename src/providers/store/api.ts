/**
 * `/v1/config/shared`: push the cluster's shared services, routes and entrypoints through any instance.
 *
 *   GET    → the document as pushed, with its store revision (also the ETag)
 *   PUT    → validate, then store it; every instance on the store serves it. `If-Match: "<revision>"` makes
 *            the write conditional (412 when someone else pushed since), as HTTP's optimistic concurrency.
 *   DELETE → withdraw it (same If-Match rule)
 *
 * Writes need the store: when it cannot be reached they fail with 503 and the store's reason, and nothing
 * else changes (every instance keeps serving what it has).
 */
import path from 'node:path';
import { ApiError, Reply, mediaType, notFound } from '../../api/router.js';
import type { RequestContext, RouteRegistrar, TableReader } from '../../api/types.js';
import { ErrorCodes, ValidationError } from '../../model/errors.js';
import type { Snapshot } from '../../model/types.js';
import type { Store } from '../../store/types.js';
import {
  SHARED_CONFIG_KEY,
  SHARED_PRIORITY,
  SHARED_PROVIDER,
  compileSharedConfig,
  emptySnapshot,
  type SharedConfigRecord,
} from './shared.js';

type Route = RouteRegistrar;

export interface SharedConfigApiDeps {
  store: Store;
  tables: TableReader;
  /** This instance's id, recorded as the pusher. */
  instanceId: string;
  /** The running config file: relative certificate paths resolve against its directory. */
  configFile?: string;
}

const MEDIA_TYPES = ['application/json', 'application/yaml', 'application/x-yaml', 'text/yaml', 'text/plain'];

export function registerSharedConfigApi(route: Route, deps: SharedConfigApiDeps): void {
  const { store } = deps;

  route(
    'GET',
    '/v1/config/shared',
    async () => {
      const entry = await store.get(SHARED_CONFIG_KEY);
      if (!entry) throw notFound('no shared config has been pushed');
      const rec = JSON.parse(entry.value.toString('utf8')) as SharedConfigRecord;
      return Reply.json(
        200,
        { revision: entry.revision, pushedAt: rec.pushedAt, by: rec.by, contentType: rec.contentType, text: rec.text },
        { etag: `"${entry.revision}"` },
      );
    },
    {
      doc: { summary: 'The shared config every instance serves, as it was pushed', tags: ['config'] },
    },
  );

  route(
    'PUT',
    '/v1/config/shared',
    async (ctx) => {
      const type = mediaType(ctx.req);
      if (type === undefined || !MEDIA_TYPES.includes(type)) {
        throw new ApiError(
          ErrorCodes.API_BAD_REQUEST,
          `send the config as ${MEDIA_TYPES.join(', ')} (got ${type ?? 'no content-type'})`,
          415,
        );
      }
      const text = await ctx.text();
      const baseDir = deps.configFile ? path.dirname(path.resolve(deps.configFile)) : process.cwd();
      let snapshot: Snapshot;
      try {
        // Routes may name this instance's entrypoints; on an instance without one, the route is not served there.
        snapshot = compileSharedConfig(text, {
          baseDir,
          entrypoints: [...new Set(['web', 'websecure', ...Object.keys(deps.tables.current().entrypoints)])],
        });
      } catch (err) {
        if (err instanceof ValidationError) return Reply.json(422, { valid: false, issues: err.issues });
        throw err;
      }
      const rec: SharedConfigRecord = { text, contentType: type, snapshot, pushedAt: new Date().toISOString(), by: deps.instanceId };
      // What it changes against what is served now: taken before the write, since the store's watch may hand
      // the push to this instance's feed (and the planes) before the write's own answer comes back.
      const { table, diff } = deps.tables.preview(SHARED_PROVIDER, SHARED_PRIORITY, snapshot);
      const expected = ifMatch(ctx);
      const entry =
        expected === undefined
          ? await store.put(SHARED_CONFIG_KEY, JSON.stringify(rec))
          : await store.cas(SHARED_CONFIG_KEY, expected, JSON.stringify(rec));
      if (!entry) throw preconditionFailed(expected!);
      return Reply.json(
        200,
        { revision: entry.revision, diff, conflicts: table.conflicts, warnings: table.warnings },
        { etag: `"${entry.revision}"` },
      );
    },
    {
      bodyLimit: 8 * 1024 * 1024,
      doc: {
        summary: 'Push the shared config (services, routes, entrypoints) to every instance on this store',
        description:
          'Validated like a config file. `If-Match: "<revision>"` makes the write conditional. 503 when the store cannot be reached.',
        tags: ['config'],
      },
    },
  );

  route(
    'DELETE',
    '/v1/config/shared',
    async (ctx) => {
      const expected = ifMatch(ctx);
      const cur = await store.get(SHARED_CONFIG_KEY);
      if (!cur) throw notFound('no shared config has been pushed');
      if (expected !== undefined && expected !== cur.revision) throw preconditionFailed(expected);
      const { diff } = deps.tables.preview(SHARED_PROVIDER, SHARED_PRIORITY, emptySnapshot()); // before, as for a push
      const deleted = await store.delete(SHARED_CONFIG_KEY, cur.revision);
      if (!deleted) throw preconditionFailed(cur.revision);
      return Reply.json(200, { deleted: true, diff });
    },
    {
      doc: { summary: 'Withdraw the shared config from every instance', tags: ['config'] },
    },
  );
}

function ifMatch(ctx: RequestContext): number | undefined {
  const h = ctx.req.headers['if-match'];
  if (h === undefined) return undefined;
  const m = /^\s*(?:W\/)?"?(\d+)"?\s*$/.exec(h);
  if (!m) throw new ApiError(ErrorCodes.API_BAD_REQUEST, `If-Match must be a revision ("12"), got ${JSON.stringify(h)}`, 400);
  return Number(m[1]);
}

function preconditionFailed(expected: number): ApiError {
  return new ApiError(
    ErrorCodes.STORE_CONFLICT,
    `the shared config is no longer at revision ${expected}: someone pushed since; GET it and try again`,
    412,
  );
}
