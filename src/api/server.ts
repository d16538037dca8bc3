/**
 * The admin REST api on node:http: the routing table, its history and diffs, providers and data planes,
 * config dry runs, the OpenAPI document and Prometheus metrics.
 *
 * Each area (pki, dns, l4, overlay, instances, …) adds its resources with `route()` calls through a
 * RouteRegistrar (api/types.ts); auth, errors, metrics, access logging and the OpenAPI document come with it.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import { formatListen } from '../model/parse.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';
import { metric, prom } from '../telemetry/metrics.js';
import { buildOpenApi } from './openapi.js';
import { registerCoreResources } from './resources.js';
import { ApiError, errorReply, notFound, readBody, Reply, Router, send } from './router.js';
import { checkBearer } from './token.js';
import type { ApiDeps, RequestContext, RouteHandler, RouteOptions } from './types.js';

/** The `route` label of requests that matched no route: raw paths would make label cardinality unbounded. */
export const UNMATCHED_ROUTE = 'unmatched';

/** Status recorded for a request whose client went away before the response was written (as nginx does). */
const CLIENT_CLOSED = '499';

export class ApiServer {
  private readonly router = new Router();
  private readonly server: http.Server;
  private readonly log: Logger;
  private readonly metrics: {
    requests: prom.Counter<'method' | 'route' | 'code'>;
    seconds: prom.Histogram<'method' | 'route'>;
  };
  /** Built on first request, dropped whenever a route is added. */
  private openApiDoc: Record<string, unknown> | undefined;

  constructor(private readonly deps: ApiDeps) {
    if (!deps.token) throw new TypeError('ApiServer: a non-empty token is required');
    this.log = (deps.logger ?? silentLogger).child({ component: 'api' });
    const r = deps.registry;
    this.metrics = {
      requests: metric(
        r,
        'portico_api_requests_total',
        () =>
          new prom.Counter({
            name: 'portico_api_requests_total',
            help: 'Admin api requests, by method, route pattern and status code (499: client went away)',
            labelNames: ['method', 'route', 'code'],
            registers: [],
          }),
      ),
      seconds: metric(
        r,
        'portico_api_request_duration_seconds',
        () =>
          new prom.Histogram({
            name: 'portico_api_request_duration_seconds',
            help: 'Admin api request duration, by method and route pattern',
            labelNames: ['method', 'route'],
            buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
            registers: [],
          }),
      ),
    };
    // Admin requests are small: a client that is slow to send one is holding a socket for nothing. Node
    // enforces both timeouts only when it sweeps its connections (every 30 s by default), so a 10 s head
    // timeout held slow connections open for up to 40 s: sweep at a quarter of the head timeout instead.
    const headersTimeout = deps.headersTimeoutMs ?? 10_000;
    this.server = http.createServer(
      {
        headersTimeout,
        requestTimeout: Math.max(headersTimeout, deps.requestTimeoutMs ?? 30_000),
        connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))),
      },
      (req, res) => void this.handle(req, res),
    );
    registerCoreResources(this, deps);
  }

  /**
   * Serve `handler` at `method path`. `path` may hold `:params` (`/v1/certs/:name`); resources go under
   * `/v1/`. Routes need the bearer token unless `opts.auth` is false. `opts.doc` describes the route
   * in `/v1/openapi.json` (it is listed either way). Throws on a duplicate registration.
   */
  route(method: string, path: string, handler: RouteHandler, opts: RouteOptions = {}): void {
    this.router.add(method, path, handler, opts);
    this.openApiDoc = undefined;
  }

  /** The OpenAPI 3.1 document of every route registered so far. */
  openApi(): Record<string, unknown> {
    this.openApiDoc ??= buildOpenApi(this.router.routes(), {
      title: 'Portico admin api',
      version: '1',
      description: 'Every operation needs `Authorization: Bearer <token>` (the token is in `<data>/api-token`) unless it says otherwise.',
    });
    return this.openApiDoc;
  }

  /** Start listening; resolves with the bound address (port 0 gives an ephemeral port). */
  listen(at: { host: string; port: number }): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(
          new PorticoError(ErrorCodes.LISTEN_FAILED, `admin api cannot listen on ${formatListen(at)}: ${err.message}`, 500, { cause: err }),
        );
      };
      this.server.once('error', onError);
      this.server.listen(at.port, at.host, () => {
        this.server.off('error', onError);
        const addr = this.server.address() as AddressInfo;
        const bound = { host: addr.address, port: addr.port };
        this.log.info({ listen: formatListen(bound) }, 'admin api listening');
        resolve(bound);
      });
    });
  }

  /** Stop accepting connections, let in-flight requests finish, drop idle keep-alive connections. */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.server.close((err) => (err ? reject(err) : resolve()));
      this.server.closeIdleConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    let route = UNMATCHED_ROUTE;
    res.setHeader('x-request-id', requestId);
    res.once('close', () => this.record(method, route, path, res, started, requestId));

    try {
      const match = this.router.match(method, path);
      if (match.kind === 'found') route = match.route.pattern;
      // Authenticate before saying whether a path exists, so the api cannot be mapped without a token.
      if (match.kind !== 'found' || match.route.auth) this.authenticate(req);
      if (match.kind === 'none') throw notFound(`no resource at ${path}`);
      if (match.kind === 'method') {
        throw new ApiError(ErrorCodes.API_BAD_REQUEST, `${method} is not allowed here; use ${match.allowed.join(', ')}`, 405, {
          allow: match.allowed.join(', '),
        });
      }
      const ctx = this.context(req, res, {
        method,
        path,
        route,
        requestId,
        params: match.params,
        query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)),
        bodyLimit: match.route.bodyLimit,
      });
      const result = await match.route.handler(ctx);
      if (res.headersSent || res.writableEnded) return; // the handler wrote the response itself
      send(res, result instanceof Reply ? result : result === undefined ? Reply.empty() : Reply.json(200, result));
    } catch (err) {
      const { reply, internal } = errorReply(err, requestId);
      if (internal) this.log.error({ err, reqId: requestId, method, route }, 'admin api request failed');
      if (res.headersSent)
        res.destroy(); // mid-stream: a truncated body must not look complete
      else send(res, reply);
    }
  }

  /** Throws 401 unless the request carries the token. RFC 6750 says which of the two cases it was. */
  private authenticate(req: http.IncomingMessage): void {
    const header = req.headers.authorization;
    if (checkBearer(header, this.deps.token)) return;
    const challenge = header === undefined ? 'Bearer realm="portico"' : 'Bearer realm="portico", error="invalid_token"';
    throw new ApiError(ErrorCodes.API_UNAUTHORIZED, 'missing or wrong bearer token', 401, { 'www-authenticate': challenge });
  }

  private context(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    r: {
      method: string;
      path: string;
      route: string;
      requestId: string;
      params: Record<string, string>;
      query: URLSearchParams;
      bodyLimit: number;
    },
  ): RequestContext {
    let body: Promise<Buffer> | undefined;
    const logger = this.log.child({ reqId: r.requestId });
    const ctx: RequestContext = {
      req,
      res,
      logger,
      method: r.method,
      path: r.path,
      route: r.route,
      params: r.params,
      query: r.query,
      requestId: r.requestId,
      param(name) {
        const v = r.params[name];
        if (v === undefined) throw new TypeError(`route ${r.route} has no parameter ":${name}"`);
        return v;
      },
      body: () => (body ??= readBody(req, r.bodyLimit)),
      text: async () => (await ctx.body()).toString('utf8'),
      json: async () => {
        const text = await ctx.text();
        try {
          return JSON.parse(text) as unknown;
        } catch (err) {
          throw new ApiError(ErrorCodes.API_BAD_REQUEST, `request body is not valid JSON: ${(err as Error).message}`, 400);
        }
      },
    };
    return ctx;
  }

  /** Metrics and the access log line, once the response is done (or the client gone). Headers are never logged. */
  private record(method: string, route: string, path: string, res: http.ServerResponse, started: bigint, requestId: string): void {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const code = res.writableFinished ? String(res.statusCode) : CLIENT_CLOSED;
    this.metrics.requests.inc({ method, route, code });
    this.metrics.seconds.observe({ method, route }, seconds);
    this.log.debug({ reqId: requestId, method, route, path, status: Number(code), ms: Math.round(seconds * 1e4) / 10 }, 'api request');
  }
}
