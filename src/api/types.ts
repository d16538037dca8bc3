/**
 * Public types of the admin api: what the composition root hands the server (ApiDeps), what a data plane
 * reports about itself (PlaneStatus), and the contract a resource handler is written against.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Aggregator } from '../aggregator/aggregator.js';
import type { ProviderStatus } from '../providers/types.js';
import type { Logger } from '../telemetry/log.js';
import type { Registry } from '../telemetry/metrics.js';

/** What one data plane (l7, l4, dns) says about itself; `GET /v1/planes` lists them. Defined with the plane contract. */
export type { PlaneStatus } from '../model/plane.js';
import type { PlaneStatus } from '../model/plane.js';

/**
 * The tables the api shows: it reads them and previews one, never publishes, and the type says so. The
 * pipeline of served tables (src/aggregator/pipeline.ts) is one; so is an `Aggregator` (tests).
 */
export type TableReader = Pick<Aggregator, 'current' | 'get' | 'versions' | 'diff' | 'preview'>;

export interface Readiness {
  ready: boolean;
  /** Why not ready, one short sentence each (`no routing table yet`, `provider file: error …`). */
  reasons: string[];
  /**
   * Serving, but not everything is well (the shared store is unreachable, a provider lost its source):
   * still ready, so a load balancer keeps the instance in rotation; the reasons say what is wrong.
   */
  degraded?: boolean;
}

export interface ApiDeps {
  /** The served tables (src/aggregator/pipeline.ts): what the planes serve is what the api shows. */
  tables: TableReader;
  providers: () => ProviderStatus[];
  planes: () => PlaneStatus[];
  /** Served at `/metrics`; the api registers its own request metrics here once, at construction. */
  registry: Registry;
  /**
   * The `/metrics` exposition when it is more than `registry` (the data-plane workers' registries merged
   * in, src/workers/host.ts). Default: `registry` alone.
   */
  metrics?: () => Promise<{ contentType: string; text: string }>;
  /** The bearer token every non-public route requires (see `ensureToken`). */
  token: string;
  /** Serve `/metrics` without a token (`api.metricsPublic: true`), for scrapers that cannot carry one. */
  metricsPublic?: boolean;
  logger?: Logger;
  /**
   * Readiness for `/readyz`. Default: ready once a table has been served (version > 0) and
   * no provider is in `error`.
   */
  ready?: () => Readiness;
  /** The config file the daemon runs on; its directory resolves relative paths when validating a config. */
  config?: () => { file?: string };
  /** A client must send a whole request head within this long, ms (slowloris). Default 10 000. */
  headersTimeoutMs?: number;
  /** A client must send a whole request within this long, ms. Default 30 000 (never below headersTimeoutMs). */
  requestTimeoutMs?: number;
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

/** A loose OpenAPI 3.1 Schema Object (or `{ $ref }`): JSON Schema 2020-12. */
export type JsonSchema = Record<string, unknown>;

/**
 * How a route describes itself in `/v1/openapi.json`. Path parameters (`:name`) are documented
 * automatically, as are 401 on authenticated routes and the bearer requirement.
 */
export interface RouteDoc {
  summary: string;
  description?: string;
  /** Groups operations in viewers; default: the path's first segment after `/v1`. */
  tags?: string[];
  /** Default: method + path in camelCase (`getV1TableVersions`). */
  operationId?: string;
  /** Query (or header) parameters, as OpenAPI Parameter Objects. */
  parameters?: Array<{ name: string; in: 'query' | 'header'; required?: boolean; description?: string; schema?: JsonSchema }>;
  /** Accepted body media types, each with its schema. */
  requestBody?: { description?: string; required?: boolean; content: Record<string, { schema?: JsonSchema }> };
  /** By status code. Default: `200` with no schema. */
  responses?: Record<string, { description: string; schema?: JsonSchema; contentType?: string }>;
}

export interface RouteOptions {
  /** Require the bearer token. Default true: a route is public only when it says so. */
  auth?: boolean;
  /** Largest body `ctx.body()` accepts, bytes; more gives 413. Default 1 MiB. */
  bodyLimit?: number;
  doc?: RouteDoc;
}

/** One request, as a handler sees it. */
export interface RequestContext {
  readonly req: IncomingMessage;
  /** For handlers that stream; a handler that writes here itself must return nothing. */
  readonly res: ServerResponse;
  readonly method: string;
  /** The raw path, without the query string. */
  readonly path: string;
  /** The route pattern that matched (`/v1/certs/:name`). */
  readonly route: string;
  /** Decoded `:params`. */
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  /** Also sent as `x-request-id`; quote it when logging so a client's report can be found. */
  readonly requestId: string;
  readonly logger: Logger;
  /** A path parameter the pattern declares (throws if it does not: a bug in the route, not the request). */
  param(name: string): string;
  /** The body, read once (cached) and capped at the route's `bodyLimit` (413 beyond). */
  body(): Promise<Buffer>;
  text(): Promise<string>;
  /** The body parsed as JSON; 400 if it is not. */
  json(): Promise<unknown>;
}

/**
 * A resource handler. Return a `Reply` for full control, `undefined` for 204, or any other value to
 * send it as 200 JSON. Throw a PorticoError to answer with its status (ValidationError gives 400 with its
 * issues); anything else thrown is a 500 whose details go to the log, not the client.
 */
export type RouteHandler = (ctx: RequestContext) => unknown;

/**
 * How an area (pki, dns, l4, overlay, instances, …) adds its resources to the admin api: serve `handler`
 * at `method path` (`:params` allowed; resources go under `/v1/`). Throws on a duplicate registration.
 * `ApiServer.route` is one; areas import this type, never the server.
 */
export type RouteRegistrar = (method: string, path: string, handler: RouteHandler, opts?: RouteOptions) => void;
