/**
 * The Consul catalog provider: Consul's services and their healthy instances as a feed of services,
 * endpoints, HTTP routes and VIPs (the tag/meta convention is in translate.ts and docs/consul.md).
 *
 *   GET /v1/catalog/services                 blocking: which services exist (and their tag union)
 *   GET /v1/health/service/<name>?passing    blocking, one loop per service: its instances whose every
 *                                            check (node and service) passes
 *
 * Each loop follows Consul's blocking-query rules (watch.ts). Services appearing start a loop, services
 * leaving stop theirs. A loop's answer (or a change of the service's catalog tags) marks that service; after
 * a burst (debounced) only the marked services are translated again, a translation equal to the last one
 * keeps its objects, and what differs from what was sent goes to the sink (src/providers/sent.ts): a delta
 * naming those services and their routes when the sink takes changes, else a whole snapshot. A loop that
 * reads everything afresh (after an outage, an index reset) costs its service's translation, and hands over
 * nothing when nothing changed.
 *
 * Consul down (refused, timed out, 5xx): the provider is `degraded`, `lastError` says why, nothing is sent —
 * the last good snapshot keeps serving — and every loop retries with capped exponential backoff; when Consul
 * answers again each loop reads afresh (index 0) and then blocks again. An ACL refusal (403) is reported as
 * such; the token is sent as `X-Consul-Token` and never logged or shown.
 */
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import Consul from 'consul';
import { ErrorCodes, PorticoError } from '../../model/errors.js';
import type { Snapshot } from '../../model/types.js';
import { Outbox, type IdRoute, type Knowledge, type LocalService, type ProviderWarning } from '../sent.js';
import { silentLogger } from '../../telemetry/log.js';
import type { Logger } from '../../telemetry/log.js';
import type { Provider, ProviderState, ProviderStatus, SnapshotSink } from '../types.js';
import { entryStatus, translateService } from './translate.js';
import type {
  ConsulCatalogServices,
  ConsulCheck,
  ConsulHealthEntry,
  ConsulNode,
  ConsulServiceInstance,
  TranslatedService,
  TranslateOptions,
} from './translate.js';
import { BlockingWatch, ProtocolError } from './watch.js';
import type { BackoffOptions, RateLimitOptions, RequestCtx } from './watch.js';

export interface ConsulProviderOptions {
  /** Consul HTTP api: `http://127.0.0.1:8500` (a path prefix is kept; `/v1` is appended). */
  url: string;
  /** ACL token, sent as `X-Consul-Token`. Needs `service:read` and `node:read` on what should be published. */
  token?: string;
  /** Datacenter to read (`?dc=`); default: the agent's own. */
  datacenter?: string;
  /** Provider name (`web@consul`). Default `consul`. */
  name?: string;
  /** Conflict priority; higher wins. Default 50 (below the config file's 100). */
  priority?: number;
  logger?: Logger;
  /** Blocking-query `wait`, ms. Default 300 000 (Consul's own default, 5m); at most 600 000. */
  waitMs?: number;
  /** Timeout of a plain read, and the slack added to a blocking read's `wait + wait/16`, ms. Default 10 000. */
  requestTimeoutMs?: number;
  /** Retry delays after an error. Default 100 ms doubling to 10 s. */
  backoff?: Partial<BackoffOptions>;
  /** Blocking-loop rate limit. Default burst 2, then one read per second per loop. */
  rateLimit?: Partial<RateLimitOptions>;
  /** Quiet time after a change before the snapshot is built, ms. Default 25. */
  debounceMs?: number;
  /** DNS framework of the services (`<svc>.<framework>.mesos`). Default `consul`. */
  framework?: string;
  /** Entrypoint of routes that name none. Default `web`. */
  entrypoint?: string;
  /** Publish services without a `portico.enable` tag/meta. Default true. */
  exposedByDefault?: boolean;
  /**
   * Also serve instances whose worst check is `warning` (Consul's `?passing` leaves them out). The query is
   * then made without `passing` and critical/maintenance instances are dropped here. Default false.
   */
  includeWarning?: boolean;
  /** Consul service names never published. Default `["consul"]` (the servers' own RPC service). */
  ignoreServices?: string[];
  /** PEM CA bundle for an `https://` url. */
  ca?: string | Buffer;
}

export const CONSUL_PROVIDER_DEFAULTS = {
  name: 'consul',
  priority: 50,
  waitMs: 300_000,
  requestTimeoutMs: 10_000,
  backoff: { initialMs: 100, maxMs: 10_000 },
  rateLimit: { burst: 2, intervalMs: 1000 },
  debounceMs: 25,
  framework: 'consul',
  entrypoint: 'web',
  exposedByDefault: true,
  includeWarning: false,
  ignoreServices: ['consul'],
} as const;

/** The few calls of the `consul` package used here, typed (its own .d.ts has no response types). */
interface ConsulCalls {
  catalog: { service: { list(opts: Record<string, unknown>): Promise<unknown> } };
  health: { service(opts: Record<string, unknown>): Promise<unknown> };
  destroy(): void;
}

interface ServiceState {
  watch: BlockingWatch;
  /** Instances from the last read; undefined until the first read. */
  entries?: ConsulHealthEntry[];
  /** Meta of the last non-empty instance set (convention source while no instance passes). */
  lastMeta?: Array<Record<string, string>>;
  /** The first read has finished (with data or an error): the initial snapshot may be sent without waiting. */
  settled: boolean;
}

const CATALOG = 'catalog';

/**
 * One Consul service as last translated, with fingerprints: an equal translation keeps this one, and an
 * equal service keeps its object (what the sink was handed) when only the routes or warnings changed.
 */
interface Translated {
  service: LocalService | undefined;
  routes: IdRoute[];
  warnings: string[];
  serviceText: string;
  print: string;
}

function translated(out: TranslatedService, name: string, provider: string, old: Translated | undefined): Translated {
  // Route ids are `<provider>/<service>/<host><path>` (translate.ts): stable while the route is.
  const routes = out.routes.map((r, i) => (r.id !== undefined ? r : { ...r, id: `${provider}/${name}/${i}` })) as IdRoute[];
  const serviceText = JSON.stringify(out.service ?? null);
  const service = old !== undefined && old.serviceText === serviceText ? old.service : out.service;
  return { service, routes, warnings: out.warnings, serviceText, print: JSON.stringify([serviceText, routes, out.warnings]) };
}

export class ConsulProvider implements Provider {
  readonly name: string;
  readonly priority: number;

  private readonly baseUrl: string;
  /** The url as shown: no user-info. */
  private readonly displayUrl: string;
  private readonly token: string | undefined;
  private readonly datacenter: string | undefined;
  private readonly waitMs: number;
  private readonly requestTimeoutMs: number;
  private readonly backoff: BackoffOptions;
  private readonly rate: RateLimitOptions;
  private readonly debounceMs: number;
  private readonly includeWarning: boolean;
  private readonly ignore: Set<string>;
  private readonly topts: TranslateOptions;
  private readonly log: Logger;
  private readonly agent: http.Agent;
  private readonly consul: ConsulCalls;

  private sink: SnapshotSink | undefined;
  private stopped = false;
  private catalogWatch: BlockingWatch | undefined;
  /** Consul's service list (name → tag union), after the ignore list. Undefined until the first read. */
  private catalog: Map<string, string[]> | undefined;
  private readonly services = new Map<string, ServiceState>();
  /** Watch key (`catalog` or `service:<name>`) → its current error. */
  private readonly failing = new Map<string, string>();
  private debounceTimer: NodeJS.Timeout | undefined;
  private settleStart: (() => void) | undefined;

  private state: ProviderState = 'starting';
  private lastUpdate: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  private sentAny = false;
  /** Each published service's translation, by Consul name. */
  private readonly translated = new Map<string, Translated>();
  /** Services read or retagged since the last hand-over: translated again at the next. */
  private readonly dirty = new Set<string>();
  private sortedNames: string[] | undefined;
  private readonly routeIndex = new Map<string, IdRoute>();
  private readonly outbox = new Outbox();
  private readonly knowledge: Knowledge = {
    service: (name) => this.translated.get(name)?.service,
    route: (id) => {
      const route = this.routeIndex.get(id);
      return route && { route };
    },
    entrypoints: () => ({}),
    warnings: () => this.warningList(),
    snapshot: () => this.snapshot(),
  };
  private warnings: string[] = [];
  private warningsKey = '';
  /** Counters of loops that ended (services gone), so totals survive them. */
  private retired = { requests: 0, resets: 0, limited: 0 };
  private errors = 0;

  constructor(opts: ConsulProviderOptions) {
    // Echo the url in errors unless it may carry credentials.
    const echo = typeof opts.url === 'string' && !opts.url.includes('@') ? `"${opts.url}"` : '(a url with credentials, not shown)';
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new PorticoError(ErrorCodes.CONFIG_INVALID, `consul.url: ${echo} is not a URL (write e.g. "http://127.0.0.1:8500")`, 400);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new PorticoError(ErrorCodes.CONFIG_INVALID, `consul.url: ${echo} must be http:// or https://`, 400);
    }
    const waitMs = opts.waitMs ?? CONSUL_PROVIDER_DEFAULTS.waitMs;
    if (!Number.isFinite(waitMs) || waitMs < 1 || waitMs > 600_000) {
      throw new PorticoError(ErrorCodes.CONFIG_INVALID, `consul wait must be 1ms..10m (Consul's limit), not ${waitMs} ms`, 400);
    }
    const path = url.pathname.replace(/\/+$/, '');
    this.baseUrl = `${url.protocol}//${url.host}${path}/v1`;
    const shown = new URL(url.href);
    shown.username = '';
    shown.password = '';
    this.displayUrl = `${shown.protocol}//${shown.host}${path}`;
    if (url.username) {
      // Basic auth in front of Consul (a proxy): papi reads it from the base url.
      this.baseUrl = `${url.protocol}//${url.username}${url.password ? `:${url.password}` : ''}@${url.host}${path}/v1`;
    }

    this.name = opts.name ?? CONSUL_PROVIDER_DEFAULTS.name;
    this.priority = opts.priority ?? CONSUL_PROVIDER_DEFAULTS.priority;
    this.token = opts.token !== undefined && opts.token !== '' ? opts.token : undefined;
    this.datacenter = opts.datacenter !== undefined && opts.datacenter !== '' ? opts.datacenter : undefined;
    this.waitMs = waitMs;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? CONSUL_PROVIDER_DEFAULTS.requestTimeoutMs;
    this.backoff = { ...CONSUL_PROVIDER_DEFAULTS.backoff, ...opts.backoff };
    this.rate = { ...CONSUL_PROVIDER_DEFAULTS.rateLimit, ...opts.rateLimit };
    if (!(this.rate.burst >= 1) || !(this.rate.intervalMs > 0)) {
      throw new PorticoError(ErrorCodes.CONFIG_INVALID, 'consul rate limit: burst must be ≥ 1 and interval > 0', 400);
    }
    this.debounceMs = opts.debounceMs ?? CONSUL_PROVIDER_DEFAULTS.debounceMs;
    this.includeWarning = opts.includeWarning ?? CONSUL_PROVIDER_DEFAULTS.includeWarning;
    this.ignore = new Set(opts.ignoreServices ?? CONSUL_PROVIDER_DEFAULTS.ignoreServices);
    this.topts = {
      provider: this.name,
      framework: opts.framework ?? CONSUL_PROVIDER_DEFAULTS.framework,
      entrypoint: opts.entrypoint ?? CONSUL_PROVIDER_DEFAULTS.entrypoint,
      exposedByDefault: opts.exposedByDefault ?? CONSUL_PROVIDER_DEFAULTS.exposedByDefault,
    };
    this.log = (opts.logger ?? silentLogger).child({ component: 'provider', provider: this.name });

    // Our own agent, so stop() can destroy every socket (one long poll per service is one socket each).
    this.agent =
      url.protocol === 'https:'
        ? new https.Agent({ keepAlive: true, ...(opts.ca !== undefined && { ca: opts.ca }) })
        : new http.Agent({ keepAlive: true });
    this.consul = new Consul({
      baseUrl: this.baseUrl,
      agent: this.agent,
      ...(opts.ca !== undefined && { ca: opts.ca }),
    } as unknown as ConstructorParameters<typeof Consul>[0]) as unknown as ConsulCalls;
  }

  /**
   * Resolves once the first complete snapshot has been sent, or the first read failed (recorded in
   * status(); the loops keep retrying and the snapshot follows when Consul answers).
   */
  async start(sink: SnapshotSink): Promise<void> {
    if (this.sink) throw new Error(`consul provider ${this.name} is already started`);
    this.sink = sink;
    this.stopped = false;
    const settled = new Promise<void>((resolve) => {
      this.settleStart = resolve;
    });
    this.catalogWatch = new BlockingWatch(
      {
        what: 'the service catalog',
        fetch: (index, ctx) => this.fetchCatalog(index, ctx),
        onData: (body) => this.onCatalog(body),
        onOk: () => this.markOk(CATALOG),
        onError: (err, n, retry) => this.markFailed(CATALOG, 'the service catalog', err, n, retry),
        onReset: (from, to) => this.onReset('the service catalog', from, to),
      },
      this.backoff,
      this.rate,
    );
    this.log.info(
      { url: this.displayUrl, datacenter: this.datacenter, acl: this.token ? 'token set' : 'no token' },
      'watching the Consul catalog',
    );
    this.catalogWatch.start();
    await settled;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.debounceTimer);
    this.debounceTimer = undefined;
    const loops = [this.catalogWatch, ...[...this.services.values()].map((s) => s.watch)].filter(
      (w): w is BlockingWatch => w !== undefined,
    );
    await Promise.all(loops.map((w) => w.stop()));
    this.consul.destroy();
    this.agent.destroy();
    this.state = 'stopped';
    this.sink = undefined;
    this.settle();
  }

  status(): ProviderStatus {
    const loops = [this.catalogWatch, ...[...this.services.values()].map((s) => s.watch)].filter(
      (w): w is BlockingWatch => w !== undefined,
    );
    const sum = (f: (w: BlockingWatch) => number) => loops.reduce((n, w) => n + f(w), 0);
    const details: Record<string, unknown> = {
      url: this.displayUrl,
      datacenter: this.datacenter ?? '(agent default)',
      acl: this.token ? 'token set' : 'no token',
      catalogIndex: (this.catalogWatch?.index ?? 0n).toString(),
      services: this.catalog?.size ?? 0,
      // Services read (or retagged) and not yet translated: the next hand-over looks at them.
      pending: this.dirty.size,
      watches: loops.length,
      failing: [...this.failing.keys()].sort(),
      requests: this.retired.requests + sum((w) => w.requests),
      errors: this.errors,
      indexResets: this.retired.resets + sum((w) => w.resets),
      rateLimited: this.retired.limited + sum((w) => w.limited),
      warnings: [...this.warnings],
    };
    const status: ProviderStatus = { name: this.name, priority: this.priority, state: this.state, details };
    if (this.lastUpdate !== undefined) status.lastUpdate = this.lastUpdate;
    if (this.lastError !== undefined) status.lastError = this.lastError;
    if (this.lastErrorAt !== undefined) status.lastErrorAt = this.lastErrorAt;
    return status;
  }

  // ---------------------------------------------------------------------------------------------
  // Requests (the `consul` package; `ctx` aborts, `includeResponse` gives us the headers)

  private requestOpts(index: bigint, ctx: RequestCtx): Record<string, unknown> {
    const o: Record<string, unknown> = { ctx, timeout: this.requestTimeoutMs };
    if (this.token) o.token = this.token;
    if (this.datacenter) o.dc = this.datacenter;
    if (index > 0n) {
      o.index = index.toString();
      o.wait = `${this.waitMs}ms`;
      // Consul adds up to wait/16 of jitter; then leave room for the answer itself.
      o.timeout = this.waitMs + Math.ceil(this.waitMs / 16) + this.requestTimeoutMs;
    }
    return o;
  }

  private fetchCatalog(index: bigint, ctx: RequestCtx): Promise<[IncomingMessage, unknown]> {
    return this.consul.catalog.service.list(this.requestOpts(index, ctx)) as Promise<[IncomingMessage, unknown]>;
  }

  private fetchHealth(service: string, index: bigint, ctx: RequestCtx): Promise<[IncomingMessage, unknown]> {
    const o = this.requestOpts(index, ctx);
    o.service = service;
    if (!this.includeWarning) o.passing = true;
    return this.consul.health.service(o) as Promise<[IncomingMessage, unknown]>;
  }

  // ---------------------------------------------------------------------------------------------
  // Catalog and per-service loops

  private onCatalog(body: unknown): void {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new ProtocolError('Consul answered /v1/catalog/services with something other than an object of service names');
    }
    const next = new Map<string, string[]>();
    for (const [name, tags] of Object.entries(body as ConsulCatalogServices)) {
      if (this.ignore.has(name)) continue;
      next.set(name, Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : []);
    }
    // The tag union is a convention source when no instance passes: a service whose tags changed is
    // translated again, as is one that left.
    const prev = this.catalog;
    for (const [name, tags] of next) if (prev?.get(name)?.join('\0') !== tags.join('\0')) this.dirty.add(name);
    for (const name of prev?.keys() ?? []) if (!next.has(name)) this.dirty.add(name);
    this.catalog = next;
    if (this.stopped) return;
    for (const [name, st] of this.services) {
      if (next.has(name)) continue;
      this.services.delete(name);
      this.failing.delete(`service:${name}`);
      this.retired.requests += st.watch.requests;
      this.retired.resets += st.watch.resets;
      this.retired.limited += st.watch.limited;
      void st.watch.stop();
      this.log.info({ service: name }, 'Consul service gone');
    }
    for (const name of next.keys()) {
      if (!this.services.has(name)) this.watchService(name);
    }
    this.recompute();
    this.schedule();
  }

  private watchService(name: string): void {
    const key = `service:${name}`;
    const what = `service ${name}`;
    const st: ServiceState = {
      settled: false,
      watch: new BlockingWatch(
        {
          what,
          fetch: (index, ctx) => this.fetchHealth(name, index, ctx),
          onData: (body) => this.onHealth(name, body),
          onOk: () => {
            this.markOk(key);
            this.markSettled(name);
          },
          onError: (err, n, retry) => {
            this.markFailed(key, what, err, n, retry);
            this.markSettled(name);
          },
          onReset: (from, to) => this.onReset(what, from, to),
        },
        this.backoff,
        this.rate,
      ),
    };
    this.services.set(name, st);
    st.watch.start();
  }

  private onHealth(name: string, body: unknown): void {
    if (!Array.isArray(body)) throw new ProtocolError(`Consul answered /v1/health/service/${name} with something other than an array`);
    const st = this.services.get(name);
    if (!st) return;
    const entries: ConsulHealthEntry[] = [];
    let malformed = 0;
    for (const raw of body as unknown[]) {
      const e = asHealthEntry(raw);
      if (!e) malformed++;
      // Without `?passing` (includeWarning), Consul sends every instance: critical and maintenance stay out.
      else if (!this.includeWarning || entryStatus(e) !== 'critical') entries.push(e);
    }
    if (malformed > 0) this.log.warn({ service: name, malformed }, 'malformed Consul health entries left out');
    st.entries = entries;
    if (entries.length > 0) st.lastMeta = entries.map((e) => ({ ...(e.Service.Meta ?? {}) }));
    this.dirty.add(name);
    this.schedule();
  }

  private markSettled(name: string): void {
    const st = this.services.get(name);
    if (!st || st.settled) return;
    st.settled = true;
    this.schedule();
  }

  private onReset(what: string, from: bigint, to: bigint): void {
    this.log.warn(
      { watch: what, from: from.toString(), to: to.toString() },
      'Consul index went backwards (state restored or cluster rebuilt); reading afresh',
    );
  }

  // ---------------------------------------------------------------------------------------------
  // State

  private markOk(key: string): void {
    if (this.failing.delete(key)) {
      this.log.info({ watch: key }, 'Consul answers again');
      this.recompute();
    }
  }

  private markFailed(key: string, what: string, err: unknown, consecutive: number, retryInMs: number): void {
    if (this.stopped) return;
    this.errors++;
    const message = describeError(err, what, this.displayUrl);
    const repeated = this.failing.get(key) === message;
    this.failing.set(key, message);
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
    this.recompute();
    // Loud once per distinct problem, then quiet (a Consul outage is one error per loop per retry).
    const fields = { watch: key, consecutive, retryInMs, serving: this.sentAny ? 'last good snapshot' : 'nothing yet' };
    if (repeated) this.log.debug(fields, message);
    else this.log.warn(fields, message);
    this.settle();
  }

  private recompute(): void {
    if (this.stopped) {
      this.state = 'stopped';
      return;
    }
    if (this.failing.size > 0) {
      this.state = this.sentAny ? 'degraded' : 'error';
      return;
    }
    // A later success clears the error.
    this.lastError = undefined;
    this.lastErrorAt = undefined;
    if (this.sentAny) this.state = 'ok';
  }

  private settle(): void {
    const s = this.settleStart;
    this.settleStart = undefined;
    s?.();
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshot

  private schedule(): void {
    if (this.stopped || !this.ready()) return;
    if (this.debounceTimer) {
      this.debounceTimer.refresh();
      return;
    }
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.flush();
    }, this.debounceMs);
  }

  /** Before the first snapshot: wait for the catalog and every service's first read (or first error). */
  private ready(): boolean {
    if (!this.catalog) return false;
    if (this.sentAny) return true;
    for (const st of this.services.values()) if (!st.settled) return false;
    return true;
  }

  private flush(): void {
    if (this.stopped || !this.catalog) return;
    let warningsTouched = false;
    const services: string[] = [];
    const routes: string[] = [];
    for (const name of this.dirty) {
      const st = this.catalog.has(name) ? this.services.get(name) : undefined;
      const old = this.translated.get(name);
      // Not read yet (a new service, or Consul failed before its first read): left out until it is.
      const now = st?.entries
        ? translated(
            translateService(
              { name, entries: st.entries, catalogTags: this.catalog.get(name) ?? [], ...(st.lastMeta && { fallbackMeta: st.lastMeta }) },
              this.topts,
            ),
            name,
            this.name,
            old,
          )
        : undefined;
      if (now && old ? now.print === old.print : now === old) continue;
      services.push(name);
      for (const r of old?.routes ?? []) {
        routes.push(r.id);
        this.routeIndex.delete(r.id);
      }
      if (now) {
        for (const r of now.routes) {
          routes.push(r.id);
          if (!this.routeIndex.has(r.id)) this.routeIndex.set(r.id, r);
        }
        this.translated.set(name, now);
      } else {
        this.translated.delete(name);
      }
      if (!old || !now) this.sortedNames = undefined;
      if ((old?.warnings.length ?? 0) + (now?.warnings.length ?? 0) > 0) warningsTouched = true;
    }
    this.dirty.clear();
    if (warningsTouched || !this.sentAny) this.setWarnings(this.warningList().map((w) => `${w.subject}: ${w.message}`));

    const sink = this.sink;
    if (!sink) return;
    let sent;
    try {
      sent = this.outbox.send(sink, this.knowledge, { services, routes, warnings: warningsTouched });
    } catch (err) {
      this.lastError = `the Consul snapshot was not accepted: ${err instanceof Error ? err.message : String(err)}`;
      this.lastErrorAt = new Date().toISOString();
      this.state = 'degraded';
      this.log.error({ error: this.lastError }, 'snapshot sink failed');
      this.settle();
      return;
    }
    if (sent.kind === 'none') {
      this.settle();
      return;
    }
    this.sentAny = true;
    this.lastUpdate = new Date().toISOString();
    this.recompute();
    this.log.info(
      {
        sent: sent.kind,
        ...(sent.reason && { why: sent.reason }),
        servicesChanged: sent.services,
        routesChanged: sent.routes,
        services: this.translated.size,
        routes: this.routeIndex.size,
        catalogIndex: this.catalogWatch?.index.toString(),
      },
      sent.kind === 'delta' ? 'Consul changes sent' : 'Consul snapshot sent',
    );
    this.settle();
  }

  private names(): string[] {
    return (this.sortedNames ??= [...this.translated.keys()].sort());
  }

  private warningList(): ProviderWarning[] {
    const out: ProviderWarning[] = [];
    for (const name of this.names())
      for (const message of (this.translated.get(name) as Translated).warnings) out.push({ subject: name, message });
    return out;
  }

  /** Everything, in service name order (each service's routes in host order). */
  private snapshot(): Snapshot {
    const snapshot: Snapshot = { provider: this.name, services: {}, routes: [], entrypoints: {} };
    for (const name of this.names()) {
      const x = this.translated.get(name) as Translated;
      if (x.service) snapshot.services[name] = x.service;
      for (const r of x.routes) snapshot.routes.push(r);
    }
    const warnings = this.warningList();
    if (warnings.length > 0) snapshot.warnings = warnings;
    return snapshot;
  }

  private setWarnings(warnings: string[]): void {
    const key = warnings.join('\n');
    if (key === this.warningsKey) return;
    this.warningsKey = key;
    const fresh = warnings.filter((w) => !this.warnings.includes(w));
    this.warnings = warnings;
    for (const w of fresh) this.log.warn({ warning: w }, `Consul convention: ${w}`);
  }
}

/** A health entry with the fields the translation needs, or undefined for a malformed one. */
function asHealthEntry(e: unknown): ConsulHealthEntry | undefined {
  if (e === null || typeof e !== 'object') return undefined;
  const o = e as Record<string, unknown>;
  const node = o.Node as ConsulNode | null | undefined;
  const svc = o.Service as ConsulServiceInstance | null | undefined;
  if (!node || typeof node !== 'object' || !svc || typeof svc !== 'object' || typeof svc.ID !== 'string') return undefined;
  return { Node: node, Service: svc, Checks: Array.isArray(o.Checks) ? (o.Checks as ConsulCheck[]) : [] };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ECONNABORTED',
]);

/**
 * A message for status() and the log: what failed, why, and what to do. Built from the status code, the
 * body and the error code only — never from the request (whose headers carry the token).
 */
export function describeError(err: unknown, what: string, url: string): string {
  if (err instanceof ProtocolError) return err.message;
  const e = err as {
    code?: string;
    isTimeout?: boolean;
    isResponse?: boolean;
    response?: { statusCode?: number; body?: unknown };
    message?: string;
    cause?: { code?: string };
  };
  const status = e?.response?.statusCode;
  if (e?.isResponse && typeof status === 'number') {
    const rawBody = typeof e.response?.body === 'string' ? e.response.body : '';
    const body = rawBody.trim().replace(/\s+/g, ' ').slice(0, 200);
    const said = body !== '' ? ` "${body}"` : '';
    if (status === 401 || status === 403) {
      return `Consul refused to list ${what}: HTTP ${status}${said} — the ACL token (consul.token) is unknown, expired or lacks service:read/node:read`;
    }
    return `Consul answered HTTP ${status}${said} when asked for ${what} (${url})`;
  }
  const code = e?.code ?? e?.cause?.code;
  if (e?.isTimeout) return `Consul at ${url} did not answer in time when asked for ${what}`;
  if (code && NETWORK_CODES.has(code)) return `cannot reach Consul at ${url} (${code}) to read ${what}`;
  const msg = (e?.message ?? String(err)).replace(/^consul: [a-z.]+: /, '');
  return `reading ${what} from Consul at ${url} failed: ${msg}`;
}
