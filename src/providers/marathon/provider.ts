/**
 * The Marathon provider: a Marathon-compatible REST api (Marathon itself, DC/OS's Marathon behind Admin
 * Router, or Portico's own scheduler later) as a feed of services, routes, VIPs and entrypoints.
 *
 * Session, as marathon-lb's `sse` mode does it, minus its gaps:
 *  1. Open `GET /v2/events?event_type=…&plan-format=light` (server-side filtering, light deployment plans:
 *     marathon-lb PR #544/#545), then — once the stream is open, so nothing between the two is lost —
 *     `GET /v2/apps?embed=apps.tasks` for the full state. Events that arrive meanwhile wait and are applied
 *     after it, in order.
 *  2. Events, batched for `debounceMs`:
 *     - status_update_event: the task is patched in place (a terminal state removes it, a new running task
 *       is added from the event's host/ports/ipAddresses); an unknown app is fetched.
 *     - health_status_changed_event: the task's health results are patched, so a task failing its check
 *       leaves rotation on that one event, without a round trip to Marathon. (alive:true on an app with
 *       several checks fetches the app: another check may still fail.)
 *     - api_post_event, deployment_*: the apps named are fetched (`GET /v2/apps/<id>?embed=app.tasks`;
 *       404 removes it); a deployment event that names none makes a full resync.
 *     - app_terminated_event: the app is removed.
 *     Only the apps touched are translated again, and put together with the others app by app
 *     (assembly.ts); what differs from what was sent goes to the sink (src/providers/sent.ts): a delta
 *     naming just the services and routes that changed when the sink takes changes, else a whole
 *     snapshot in which every unchanged service is the object sent before.
 *  3. The stream ends or fails: reconnect with bounded exponential backoff (and jitter), rotating through
 *     the configured urls, and resync in full on every reconnect. A stream silent for `eventIdleTimeoutMs`
 *     counts as failed. Besides, a full resync every `resyncIntervalMs` (marathon-lb: 300 s). A resync
 *     reads each app's bytes apart (slices.ts) and hashes them: an app whose bytes are what the last resync
 *     read, that no event changed since and whose translation depends on nothing else (no host name to
 *     resolve, no health verdict remembered from before) is neither parsed nor translated again. Every
 *     other app is parsed and translated; one that translates the same keeps its cached translation. Only
 *     what differs is sent (nothing, when nothing does).
 *  While Marathon cannot be reached nothing is sent: the last good snapshot keeps serving, state
 *  `degraded` (`error` before any success). If the event stream fails but `/v2/apps` answers, the state is
 *  polled on every retry (degraded).
 *
 * Auth: HTTP basic (`auth: {username, password}`, or user info in the url) or a DC/OS token
 * (`token` → `Authorization: token=<token>`), or a raw `authorization` header. Never logged; urls are
 * shown without user info.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import zlib from 'node:zlib';
import { ErrorCodes, PorticoError } from '../../model/errors.js';
import { silentLogger } from '../../telemetry/log.js';
import type { Logger } from '../../telemetry/log.js';
import { metric, prom, type Registry } from '../../telemetry/metrics.js';
import { Outbox, type Touched } from '../sent.js';
import type { Provider, ProviderState, ProviderStatus, SnapshotSink } from '../types.js';
import { Assembly } from './assembly.js';
import { SseError, connectSse, redactUrl, type SseConnection, type SseEvent } from './sse.js';
import type { MarathonApp, MarathonTask } from './json.js';
import { normaliseAppId } from './names.js';
import { memberElements } from './slices.js';
import {
  resolveOptions,
  translateApp,
  type AppTranslation,
  type AppWarning,
  type MarathonFeedSettings,
  type MarathonTranslateOptions,
} from './translate.js';

export interface MarathonProviderOptions extends MarathonFeedSettings {
  /** Marathon base url(s) (`http://master.mesos:8080`); several: tried in turn, as marathon-lb's `-m a b`. */
  url: string | string[];
  /** Provider name in the table (`app-0@marathon`). Default `marathon`. */
  name?: string;
  /** Conflict priority; higher wins. Default 50 (below the config file's 100). */
  priority?: number;
  /** marathon-lb groups this instance serves; `*` for all. Default ['external'] (the DC/OS package's). */
  groups?: string[];
  /** HTTP basic auth. */
  auth?: { username: string; password: string };
  /** DC/OS service account / user token: sent as `Authorization: token=<token>`. */
  token?: string;
  /** A raw Authorization header value (overrides auth and token). */
  authorization?: string;
  /** TLS to Marathon: extra CA (PEM) and verification. */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
  /** Whole-request timeout of `GET /v2/apps` and app fetches, ms. Default 30 s. */
  requestTimeoutMs?: number;
  /** The event stream's response head within this long, ms. Default 10 s. */
  connectTimeoutMs?: number;
  /** A silent event stream is reconnected after this long, ms. Default 5 min (marathon-lb: curl LOW_SPEED_TIME 300). 0: never. */
  eventIdleTimeoutMs?: number;
  /** Full resync this often while connected, ms. Default 5 min. 0: only on (re)connect. */
  resyncIntervalMs?: number;
  /** Events are applied in batches at most this long after the first one, ms. Default 20. */
  debounceMs?: number;
  /** Reconnect backoff, ms: doubles from min to max. Defaults 250 and 30 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Agent host names are looked up again after this long, ms. Default 5 min. */
  hostCacheMs?: number;
  logger?: Logger;
  registry?: Registry;
}

export const MARATHON_PROVIDER_DEFAULTS = {
  name: 'marathon',
  priority: 50,
  groups: ['external'] as readonly string[],
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  eventIdleTimeoutMs: 300_000,
  resyncIntervalMs: 300_000,
  debounceMs: 20,
  backoffMinMs: 250,
  backoffMaxMs: 30_000,
  hostCacheMs: 300_000,
  /** App fetches in parallel. */
  fetchConcurrency: 8,
  /** Warnings kept in status().details. */
  maxWarnings: 1000,
} as const;

/** The event types subscribed to (server-side `event_type` filter, Marathon ≥1.3.7). */
export const MARATHON_EVENT_TYPES = [
  'status_update_event',
  'health_status_changed_event',
  'api_post_event',
  'app_terminated_event',
  'deployment_info',
  'deployment_success',
  'deployment_failed',
  'deployment_step_success',
  'deployment_step_failure',
] as const;

const RELEVANT = new Set<string>(MARATHON_EVENT_TYPES);

/** Task states after which a task is gone for good (removed from the cached app on a status update). */
const GONE_STATES = new Set([
  'TASK_FINISHED',
  'TASK_FAILED',
  'TASK_KILLED',
  'TASK_ERROR',
  'TASK_DROPPED',
  'TASK_GONE',
  'TASK_GONE_BY_OPERATOR',
  'TASK_UNKNOWN',
]);

/** Marathon could not be read: no answer, an HTTP error (`status`, Marathon's status code), or not apps. */
export class MarathonHttpError extends PorticoError {
  constructor(
    message: string,
    readonly upstreamStatus?: number,
  ) {
    super(ErrorCodes.MARATHON_UNAVAILABLE, message, 502);
    this.name = 'MarathonHttpError';
  }
}

interface Metrics {
  events: prom.Counter<'provider' | 'type'>;
  syncs: prom.Counter<'provider' | 'result'>;
  syncSeconds: prom.Histogram<'provider'>;
  apps: prom.Gauge<'provider'>;
}

type Json = Record<string, unknown>;

/**
 * Where a full `/v2/apps` answer is read: one buffer kept from one resync to the next, so a 70 MB answer
 * is copied into memory already in use rather than into a fresh allocation (whose first touch costs more
 * than the copy: ~3 ms per MB of page faults on the machines measured) plus a Buffer.concat of a thousand
 * chunks. Holds as much as the largest recent answer (it shrinks when answers fall under a quarter of
 * it). What `bytes()` returns is valid until the next `begin()`: one full sync reads at a time.
 */
class BodyBuffer {
  private buf = Buffer.alloc(0);
  private length = 0;

  /** A new answer of `expected` bytes (NaN: unknown). */
  begin(expected: number): void {
    this.length = 0;
    if (Number.isFinite(expected) && expected >= 0 && (expected > this.buf.length || expected < this.buf.length / 4)) {
      this.buf = Buffer.allocUnsafe(expected);
    }
  }

  add(chunk: Buffer): void {
    const need = this.length + chunk.length;
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, Math.ceil(this.buf.length * 1.5), 1 << 16));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    chunk.copy(this.buf, this.length);
    this.length = need;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/** An app as the last full sync read it: the object parsed from its bytes and the translation kept for it. */
interface SyncedApp {
  id: string;
  raw: MarathonApp;
  piece: AppTranslation;
}

/**
 * Whether an app translates to the same from the same bytes whatever else the provider knows: every task's
 * agent is an IP address (no host name to resolve) and, with health checks, every task has results (no
 * verdict remembered from an earlier answer stands in).
 */
function selfContained(app: MarathonApp): boolean {
  const tasks = Array.isArray(app.tasks) ? (app.tasks as unknown[]) : [];
  const checked = Array.isArray(app.healthChecks) && app.healthChecks.length > 0;
  for (const t of tasks) {
    if (!isObject(t)) continue;
    if (typeof t.host === 'string' && t.host !== '' && isIP(t.host) === 0) return false;
    if (checked && !(Array.isArray(t.healthCheckResults) && t.healthCheckResults.length > 0)) return false;
  }
  return true;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class MarathonProvider implements Provider {
  readonly name: string;
  readonly priority: number;

  private readonly urls: URL[];
  private urlIndex = 0;
  private readonly headers: Record<string, string> = {};
  private readonly tlsOpts: { ca?: string | Buffer; rejectUnauthorized?: boolean } = {};
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly translateOpts: MarathonTranslateOptions;
  private readonly o: {
    requestTimeoutMs: number;
    connectTimeoutMs: number;
    eventIdleTimeoutMs: number;
    resyncIntervalMs: number;
    debounceMs: number;
    backoffMinMs: number;
    backoffMaxMs: number;
    hostCacheMs: number;
  };
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;

  private sink: SnapshotSink | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private sse: SseConnection | undefined;
  private readonly inflight = new Set<http.ClientRequest>();
  private chain: Promise<unknown> = Promise.resolve();
  private flushTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private sleepTimer: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  // What Marathon said, by app id; each app's translation, put together (assembly.ts); what was sent.
  private apps = new Map<string, MarathonApp>();
  private readonly assembly: Assembly;
  private readonly outbox = new Outbox();
  /** Last health verdict per task id (marathon-lb's healthCheckResultCache). */
  private verdicts = new Map<string, boolean>();
  private readonly hostCache = new Map<string, { ip: string | null; at: number }>();
  private pendingEvents: Array<{ type: string; data: Json }> = [];
  /** By the digest of its bytes: each app the last full sync read (only self-contained ones). */
  private syncedApps = new Map<string, SyncedApp>();
  /** The full answer's bytes, read into memory kept from one resync to the next (see BodyBuffer). */
  private readonly appsBody = new BodyBuffer();
  /** Apps an event changed (or fetched) since the last full sync: their bytes say nothing of what is held. */
  private readonly changedByEvents = new Set<string>();
  private resyncWanted = false;

  private state: ProviderState = 'starting';
  private streamUp = false;
  private synced = false;
  /** Prints are being made after a sync (warmPrints). */
  private warming = false;
  private lastUpdate: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  private lastEvent: { type: string; at: string } | undefined;
  private eventCount = 0;
  /** The last full sync: when, how long, how many apps, how many of them were parsed and translated again. */
  private lastSync: { at: string; ms: number; apps: number; reread: number } | undefined;

  constructor(opts: MarathonProviderOptions) {
    const list = Array.isArray(opts.url) ? opts.url : [opts.url];
    if (list.length === 0) throw new TypeError('marathon provider: at least one url is required');
    this.urls = list.map((u) => {
      let url: URL;
      try {
        url = new URL(u);
      } catch {
        throw new TypeError(`marathon provider: "${u}" is not a url`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new TypeError(`marathon provider: ${redactUrl(url)} must be http:// or https://`);
      if (url.username !== '' && !opts.auth && !opts.token && !opts.authorization) {
        this.headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
      }
      url.username = '';
      url.password = '';
      url.pathname = url.pathname.replace(/\/+$/, '');
      url.search = '';
      url.hash = '';
      return url;
    });
    if (opts.auth) this.headers.authorization = `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}`;
    if (opts.token) this.headers.authorization = `token=${opts.token}`;
    if (opts.authorization) this.headers.authorization = opts.authorization;
    if (opts.ca !== undefined) this.tlsOpts.ca = opts.ca;
    if (opts.rejectUnauthorized !== undefined) this.tlsOpts.rejectUnauthorized = opts.rejectUnauthorized;

    const d = MARATHON_PROVIDER_DEFAULTS;
    this.name = opts.name ?? d.name;
    this.priority = opts.priority ?? d.priority;
    this.assembly = new Assembly(this.name);
    this.o = {
      requestTimeoutMs: opts.requestTimeoutMs ?? d.requestTimeoutMs,
      connectTimeoutMs: opts.connectTimeoutMs ?? d.connectTimeoutMs,
      eventIdleTimeoutMs: opts.eventIdleTimeoutMs ?? d.eventIdleTimeoutMs,
      resyncIntervalMs: opts.resyncIntervalMs ?? d.resyncIntervalMs,
      debounceMs: opts.debounceMs ?? d.debounceMs,
      backoffMinMs: opts.backoffMinMs ?? d.backoffMinMs,
      backoffMaxMs: opts.backoffMaxMs ?? d.backoffMaxMs,
      hostCacheMs: opts.hostCacheMs ?? d.hostCacheMs,
    };
    this.translateOpts = {
      provider: this.name,
      groups: opts.groups ?? d.groups,
      missingHealth: 'exclude',
      resolveHost: (h) => this.hostCache.get(h)?.ip ?? undefined,
      previousHealth: this.verdicts,
    };
    for (const k of [
      'framework',
      'httpEntrypoint',
      'httpsEntrypoint',
      'defaultBindAddress',
      'bindServicePorts',
      'strictMode',
      'activeHealthChecks',
    ] as const) {
      if (opts[k] !== undefined) (this.translateOpts as unknown as Record<string, unknown>)[k] = opts[k];
    }
    this.log = (opts.logger ?? silentLogger).child({ component: 'provider', provider: this.name });
    const r = opts.registry;
    this.metrics = r && {
      events: metric(
        r,
        'portico_marathon_events_total',
        () =>
          new prom.Counter({
            name: 'portico_marathon_events_total',
            help: 'Marathon events received, by type',
            labelNames: ['provider', 'type'],
            registers: [],
          }),
      ),
      syncs: metric(
        r,
        'portico_marathon_syncs_total',
        () =>
          new prom.Counter({
            name: 'portico_marathon_syncs_total',
            help: 'Full resyncs from /v2/apps, by result',
            labelNames: ['provider', 'result'],
            registers: [],
          }),
      ),
      syncSeconds: metric(
        r,
        'portico_marathon_sync_seconds',
        () =>
          new prom.Histogram({
            name: 'portico_marathon_sync_seconds',
            help: 'Full resync time: fetch, parse, translate',
            labelNames: ['provider'],
            buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
            registers: [],
          }),
      ),
      apps: metric(
        r,
        'portico_marathon_apps',
        () => new prom.Gauge({ name: 'portico_marathon_apps', help: 'Marathon apps known', labelNames: ['provider'], registers: [] }),
      ),
    };
  }

  /** Resolves after the first full sync was sent, or the first attempt failed (recorded in status()). */
  async start(sink: SnapshotSink): Promise<void> {
    if (this.sink) throw new Error(`marathon provider ${this.name} is already started`);
    this.sink = sink;
    this.stopped = false;
    let first!: () => void;
    const firstDone = new Promise<void>((resolve) => (first = resolve));
    this.loop = this.run(first).catch((err: unknown) => {
      this.log.error({ err }, 'marathon provider loop failed');
      first();
    });
    await firstDone;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    if (this.sleepTimer) {
      clearTimeout(this.sleepTimer.timer);
      this.sleepTimer.wake();
    }
    this.sse?.close();
    for (const req of this.inflight) req.destroy(new Error('provider stopped'));
    await this.loop;
    await this.chain.catch(() => undefined);
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.state = 'stopped';
    this.sink = undefined;
  }

  /** Fetch the full state now (what SIGHUP does). Resolves true when it was fetched and applied. */
  reload(): Promise<boolean> {
    return this.resync();
  }

  /** The same as reload(); the stream and polling paths call it after a gap. */
  resync(): Promise<boolean> {
    return this.enqueue(async () => {
      try {
        await this.fullSync();
        return true;
      } catch (err) {
        this.syncFailed(err);
        return false;
      }
    });
  }

  status(): ProviderStatus {
    const stats = this.assembly.stats();
    const warnings = this.assembly.appWarnings();
    const details: Record<string, unknown> = {
      url: redactUrl(this.urls[this.urlIndex] as URL),
      groups: [...this.translateOpts.groups],
      eventStream: this.streamUp ? 'connected' : 'disconnected',
      apps: this.apps.size,
      tasks: stats.tasks,
      services: stats.services,
      routes: stats.routes,
      events: this.eventCount,
      warnings: warnings.slice(0, MARATHON_PROVIDER_DEFAULTS.maxWarnings),
      warningCount: warnings.length,
    };
    if (this.urls.length > 1) details.urls = this.urls.map((u) => redactUrl(u));
    if (this.lastEvent) details.lastEvent = this.lastEvent;
    if (this.lastSync) details.lastSync = this.lastSync;
    const status: ProviderStatus = { name: this.name, priority: this.priority, state: this.state, details };
    if (this.lastUpdate !== undefined) status.lastUpdate = this.lastUpdate;
    if (this.lastError !== undefined) status.lastError = this.lastError;
    if (this.lastErrorAt !== undefined) status.lastErrorAt = this.lastErrorAt;
    return status;
  }

  /** Per-app warnings of the last translation (unsupported labels, unusable values). */
  warnings(): AppWarning[] {
    return this.assembly.appWarnings();
  }

  // -------------------------------------------------------------------------------------------------
  // Session loop

  private async run(firstDone: () => void): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      const base = this.urls[this.urlIndex] as URL;
      const startedAt = Date.now();
      let opened!: () => void;
      const open = new Promise<'open'>((resolve) => (opened = () => resolve('open')));
      const conn = connectSse(this.eventsUrl(base), {
        headers: this.headers,
        agent: this.agentFor(base),
        ...this.tlsOpts,
        connectTimeoutMs: this.o.connectTimeoutMs,
        idleTimeoutMs: this.o.eventIdleTimeoutMs,
        onOpen: () => opened(),
        onEvent: (e) => this.onEvent(e),
      });
      this.sse = conn;
      let streamError: unknown;
      const outcome = await Promise.race([
        open,
        conn.done.then(
          () => 'ended' as const,
          (err: unknown) => {
            streamError = err;
            return 'failed' as const;
          },
        ),
      ]);
      if (this.stopped) break;

      if (outcome === 'open') {
        this.streamUp = true;
        this.log.info({ url: redactUrl(base) }, 'marathon event stream connected; resyncing');
        const ok = await this.resync();
        firstDone();
        if (ok) {
          attempt = 0;
          this.armResync();
          try {
            await conn.done;
            streamError = new Error('the server ended the stream');
          } catch (err) {
            streamError = err;
          }
        } else {
          conn.close();
          this.rotate();
        }
        this.streamUp = false;
        clearTimeout(this.resyncTimer);
        this.resyncTimer = undefined;
        if (this.stopped) break;
        if (ok) this.streamLost(base, streamError);
      } else {
        // The server answered, but with no event stream (a proxy that buffers, an api without SSE): poll
        // the state on each retry, so it still feeds us. No answer at all: /v2/apps would not answer either.
        const err = outcome === 'ended' ? new Error('the server ended the stream before it opened') : streamError;
        const answered = outcome === 'ended' || (err instanceof SseError && err.status !== undefined);
        if (answered) {
          this.log.warn({ url: redactUrl(base), err: errText(err) }, 'marathon event stream unavailable; polling /v2/apps');
          const ok = await this.resync();
          if (ok) this.streamLost(base, err);
          else this.rotate();
        } else {
          this.fail(`marathon ${redactUrl(base)}: ${errText(err)}${this.synced ? ' (serving what was last fetched)' : ''}`);
          this.rotate();
        }
        firstDone();
      }
      if (this.stopped) break;
      // A long healthy session starts the backoff over.
      if (Date.now() - startedAt > this.o.backoffMaxMs) attempt = 0;
      attempt++;
      const retry = conn.parser.retryMs;
      await this.sleep(Math.max(this.backoff(attempt), retry ?? 0));
    }
    // Stopped before the first attempt finished: start() must not wait forever.
    firstDone();
  }

  private streamLost(base: URL, err: unknown): void {
    this.fail(`marathon event stream ${redactUrl(base)}: ${errText(err)}; reconnecting (serving what was last fetched)`);
    this.rotate();
  }

  private rotate(): void {
    if (this.urls.length > 1) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
  }

  private backoff(attempt: number): number {
    const exp = Math.min(this.o.backoffMaxMs, this.o.backoffMinMs * 2 ** Math.min(attempt - 1, 20));
    // ±20 % jitter, so many instances do not reconnect in step.
    return Math.max(1, Math.round(exp * (0.8 + Math.random() * 0.4)));
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleepTimer = undefined;
        resolve();
      }, ms);
      this.sleepTimer = { timer, wake: resolve };
    });
  }

  private armResync(): void {
    if (this.o.resyncIntervalMs <= 0 || this.stopped) return;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.resync().then(() => {
        if (this.streamUp) this.armResync();
      });
    }, this.o.resyncIntervalMs);
    this.resyncTimer.unref();
  }

  /** Work that touches the cached state runs one piece at a time, in order. */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(() => (this.stopped ? (undefined as T) : fn()));
    this.chain = run.catch(() => undefined);
    return run;
  }

  // -------------------------------------------------------------------------------------------------
  // Full state

  private async fullSync(): Promise<void> {
    const base = this.urls[this.urlIndex] as URL;
    const t0 = performance.now();
    const url = apiUrl(base, '/v2/apps?embed=apps.tasks');
    const body = await this.getBody(url, this.appsBody);
    const read = this.readApps(url, body);
    await this.resolveHosts(read.filter((x) => x.known === undefined).map((x) => x.raw));
    if (this.stopped) return;

    // Events that arrived before this point are either in this answer or still pending (applied next).
    // An app read as it was (same bytes, nothing changed it since) keeps everything; every other app is
    // translated again, and one whose translation is what it was keeps its cached one (and its service
    // objects), so only the apps that differ reach the assembly and the sink.
    const r = resolveOptions(this.translateOpts);
    const apps = new Map<string, MarathonApp>();
    const changes = new Map<string, AppTranslation | undefined>();
    const seen = new Set<string>();
    const verdicts = new Map<string, boolean>();
    const synced = new Map<string, SyncedApp>();
    let reread = 0;
    for (let i = 0; i < read.length; i++) {
      const { raw, known, digest } = read[i] as (typeof read)[number];
      if (known) {
        if (seen.has(known.id)) continue;
        seen.add(known.id);
        apps.set(known.id, known.raw);
        for (const [k, v] of known.piece.verdicts) verdicts.set(k, v);
        synced.set(digest as string, known);
        continue;
      }
      reread++;
      const p = translateApp(raw, r, i);
      if (seen.has(p.id)) continue;
      seen.add(p.id);
      const old = this.assembly.piece(p.id);
      const kept = reuse(p, old);
      if (kept !== old) changes.set(p.id, kept);
      if (isObject(raw)) {
        apps.set(p.id, raw as MarathonApp);
        if (digest !== undefined && selfContained(raw as MarathonApp))
          synced.set(digest, { id: p.id, raw: raw as MarathonApp, piece: kept });
      }
      for (const [k, v] of p.verdicts) verdicts.set(k, v);
    }
    for (const id of this.assembly.ids()) if (!seen.has(id)) changes.set(id, undefined);
    // Keep remembered verdicts of tasks that still exist but whose results are missing right now.
    for (const app of apps.values()) {
      for (const t of Array.isArray(app.tasks) ? app.tasks : []) {
        if (isObject(t) && typeof t.id === 'string' && !verdicts.has(t.id)) {
          const v = this.verdicts.get(t.id);
          if (v !== undefined) verdicts.set(t.id, v);
        }
      }
    }
    this.apps = apps;
    this.syncedApps = synced;
    this.changedByEvents.clear();
    const { touched, newWarnings } = this.assembly.update(changes);
    this.verdicts.clear();
    for (const [k, v] of verdicts) this.verdicts.set(k, v);
    this.synced = true;
    const ms = performance.now() - t0;
    this.lastSync = { at: new Date().toISOString(), ms: Math.round(ms), apps: apps.size, reread };
    this.metrics?.syncs.inc({ provider: this.name, result: 'ok' });
    this.metrics?.syncSeconds.observe({ provider: this.name }, ms / 1000);
    this.metrics?.apps.set({ provider: this.name }, apps.size);
    this.publish('full', touched, newWarnings, changes.size);
    this.healthy();
    if (this.assembly.size > 0 && !this.warming) this.warmPrints();
  }

  /**
   * The prints of the translations a sync kept without one (apps new to it: at the first sync, every app —
   * ~0.3 s at 10,000 apps that start-up does not wait for), made a few seconds later in slices of a few
   * ms, so the next resync compares at its usual cost. One it needs before is made then.
   */
  private warmPrints(): void {
    this.warming = true;
    const timer = setTimeout(() => {
      const ids = [...this.assembly.ids()];
      let i = 0;
      const step = (): void => {
        const until = performance.now() + 5;
        while (i < ids.length && performance.now() < until && !this.stopped) {
          const p = this.assembly.piece(ids[i++] as string);
          if (p !== undefined) printOf(p);
        }
        if (i < ids.length && !this.stopped) setImmediate(step);
        else this.warming = false;
      };
      step();
    }, PRINT_WARM_DELAY_MS);
    timer.unref();
  }

  private syncFailed(err: unknown): void {
    this.metrics?.syncs.inc({ provider: this.name, result: 'error' });
    this.fail(
      `marathon ${redactUrl(this.urls[this.urlIndex] as URL)}: ${errText(err)}${this.synced ? ' (serving what was last fetched)' : ''}`,
    );
  }

  private fail(message: string): void {
    const repeated = message === this.lastError;
    this.state = this.synced ? 'degraded' : 'error';
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
    if (this.stopped) return;
    if (repeated) this.log.debug(message);
    else this.log.warn(message);
  }

  private healthy(): void {
    if (this.streamUp) {
      this.state = 'ok';
      this.lastError = undefined;
      this.lastErrorAt = undefined;
    } else if (this.state !== 'degraded') {
      this.state = 'degraded';
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Events

  private onEvent(e: SseEvent): void {
    if (this.stopped) return;
    let data: unknown;
    try {
      data = JSON.parse(e.data);
    } catch {
      this.log.debug({ type: e.type }, 'marathon event with data that is not JSON; ignored');
      return;
    }
    if (!isObject(data)) return;
    const type = e.type !== 'message' ? e.type : typeof data.eventType === 'string' ? data.eventType : 'message';
    this.eventCount++;
    this.lastEvent = { type, at: new Date().toISOString() };
    this.metrics?.events.inc({ provider: this.name, type: RELEVANT.has(type) ? type : 'other' });
    if (!RELEVANT.has(type)) return;
    this.pendingEvents.push({ type, data });
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushTimer || this.stopped) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.enqueue(() => this.flush());
    }, this.o.debounceMs);
  }

  private async flush(): Promise<void> {
    const events = this.pendingEvents;
    this.pendingEvents = [];
    // Before the first full sync there is nothing to patch (and a partial state must never be sent):
    // the full sync that follows has all of it.
    if (!this.synced) return;
    const dirty = new Set<string>();
    const refetch = new Set<string>();
    for (const ev of events) this.applyEvent(ev.type, ev.data, dirty, refetch);
    for (const id of dirty) this.changedByEvents.add(id);
    for (const id of refetch) this.changedByEvents.add(id);
    if (this.resyncWanted) {
      this.resyncWanted = false;
      try {
        await this.fullSync();
      } catch (err) {
        this.syncFailed(err);
      }
      return;
    }
    if (refetch.size > 0) await this.fetchApps([...refetch], dirty);
    if (this.stopped || dirty.size === 0) return;
    await this.resolveHosts([...dirty].map((id) => this.apps.get(id)).filter((a): a is MarathonApp => a !== undefined));
    this.rebuild(dirty);
  }

  private applyEvent(type: string, d: Json, dirty: Set<string>, refetch: Set<string>): void {
    const appIdOf = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? normaliseAppId(v) : undefined);
    switch (type) {
      case 'status_update_event': {
        const appId = appIdOf(d.appId);
        const taskId = typeof d.taskId === 'string' ? d.taskId : undefined;
        const status = typeof d.taskStatus === 'string' ? d.taskStatus : undefined;
        if (!appId || !taskId || !status) return;
        const app = this.apps.get(appId);
        if (!app) {
          refetch.add(appId);
          return;
        }
        const tasks = Array.isArray(app.tasks) ? app.tasks : (app.tasks = []);
        const idx = tasks.findIndex((t) => isObject(t) && t.id === taskId);
        if (GONE_STATES.has(status)) {
          if (idx >= 0) tasks.splice(idx, 1);
          this.verdicts.delete(taskId);
        } else if (idx >= 0) {
          const t = tasks[idx] as MarathonTask;
          t.state = status;
          if (typeof d.host === 'string') t.host = d.host;
          if (Array.isArray(d.ports)) t.ports = d.ports as number[];
          if (Array.isArray(d.ipAddresses)) t.ipAddresses = d.ipAddresses as MarathonTask['ipAddresses'];
        } else {
          const t: MarathonTask = { id: taskId, appId, state: status };
          if (typeof d.host === 'string') t.host = d.host;
          if (Array.isArray(d.ports)) t.ports = d.ports as number[];
          if (Array.isArray(d.ipAddresses)) t.ipAddresses = d.ipAddresses as MarathonTask['ipAddresses'];
          if (typeof d.slaveId === 'string') t.slaveId = d.slaveId;
          if (typeof d.version === 'string') t.version = d.version;
          tasks.push(t);
        }
        dirty.add(appId);
        return;
      }
      case 'health_status_changed_event': {
        const appId = appIdOf(d.appId);
        if (!appId || typeof d.alive !== 'boolean') return;
        const app = this.apps.get(appId);
        const taskId = typeof d.taskId === 'string' ? d.taskId : undefined;
        const instanceId = typeof d.instanceId === 'string' ? d.instanceId : undefined;
        const task = app && Array.isArray(app.tasks) ? app.tasks.find((t) => isObject(t) && taskMatches(t, taskId, instanceId)) : undefined;
        if (!app || !task) {
          refetch.add(appId);
          return;
        }
        const results = Array.isArray(task.healthCheckResults) ? task.healthCheckResults.filter(isObject) : [];
        if (!d.alive) {
          task.healthCheckResults =
            results.length === 0 ? [{ alive: false, ...(instanceId ? { instanceId } : {}) }] : results.map((x) => ({ ...x, alive: false }));
        } else if (results.length <= 1) {
          task.healthCheckResults = [{ ...(results[0] ?? {}), alive: true, ...(instanceId ? { instanceId } : {}) }];
        } else {
          // One of several checks passes again: the others may not; ask Marathon.
          refetch.add(appId);
        }
        if (typeof task.id === 'string') this.verdicts.delete(task.id);
        dirty.add(appId);
        return;
      }
      case 'api_post_event': {
        const def = isObject(d.appDefinition) ? d.appDefinition : undefined;
        const appId = appIdOf(def?.id);
        if (appId) refetch.add(appId);
        else this.resyncWanted = true;
        return;
      }
      case 'app_terminated_event': {
        const appId = appIdOf(d.appId);
        if (!appId) return;
        this.apps.delete(appId);
        dirty.add(appId);
        return;
      }
      default: {
        // deployment_*: fetch the apps the plan touches.
        const ids = appsOfDeployment(d);
        if (ids.length === 0) this.resyncWanted = true;
        for (const id of ids) refetch.add(id);
      }
    }
  }

  private async fetchApps(ids: string[], dirty: Set<string>): Promise<void> {
    const base = this.urls[this.urlIndex] as URL;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ids.length && !this.stopped) {
        const id = ids[next++] as string;
        const path = id
          .split('/')
          .filter((s) => s !== '')
          .map(encodeURIComponent)
          .join('/');
        try {
          const body = await this.getJson(apiUrl(base, `/v2/apps/${path}?embed=app.tasks`));
          const app = isObject(body) && isObject(body.app) ? (body.app as MarathonApp) : undefined;
          if (!app) throw new MarathonHttpError(`/v2/apps/${path}: the answer has no "app"`);
          this.apps.set(id, app);
          dirty.add(id);
        } catch (err) {
          if (err instanceof MarathonHttpError && err.upstreamStatus === 404) {
            this.apps.delete(id);
            dirty.add(id);
          } else if (!this.stopped) {
            // The periodic resync (or the reconnect that follows a real outage) catches up.
            this.log.warn({ app: id, err: errText(err) }, 'marathon app fetch failed');
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(MARATHON_PROVIDER_DEFAULTS.fetchConcurrency, ids.length) }, worker));
  }

  /** Translate the apps in `dirty` again; send what changed, if anything did. */
  private rebuild(dirty: Set<string>): void {
    const r = resolveOptions(this.translateOpts);
    const changes = new Map<string, AppTranslation | undefined>();
    for (const id of dirty) {
      const app = this.apps.get(id);
      const old = this.assembly.piece(id);
      if (!app) {
        if (old) changes.set(id, undefined);
        continue;
      }
      const p = translateApp(app, r);
      for (const [k, v] of p.verdicts) this.verdicts.set(k, v);
      const kept = reuse(p, old);
      if (kept !== old) changes.set(id, kept);
    }
    if (changes.size === 0) return;
    const { touched, newWarnings } = this.assembly.update(changes);
    this.publish('partial', touched, newWarnings, changes.size);
  }

  /**
   * Hand the sink what differs from what it was sent last (src/providers/sent.ts): a delta when it takes
   * them, else a whole snapshot; nothing when nothing differs.
   */
  private publish(kind: 'full' | 'partial', touched: Touched, newWarnings: AppWarning[], apps: number): void {
    const sink = this.sink;
    if (!sink) return;
    let sent;
    try {
      sent = this.outbox.send(sink, this.assembly, touched);
    } catch (err) {
      this.fail(`the snapshot was not accepted: ${errText(err)}`);
      this.log.error({ err }, 'snapshot sink failed');
      return;
    }
    if (sent.kind !== 'none') this.lastUpdate = new Date().toISOString();
    const stats = this.assembly.stats();
    this.log[kind === 'full' ? 'info' : 'debug'](
      {
        sent: sent.kind,
        ...(sent.reason && { why: sent.reason }),
        appsChanged: apps,
        servicesChanged: sent.services,
        routesChanged: sent.routes,
        apps: stats.apps,
        tasks: stats.tasks,
        services: stats.services,
        endpoints: stats.endpoints,
        routes: stats.routes,
        warnings: this.assembly.warningTotal,
      },
      kind === 'full' ? 'marathon state resynced' : 'marathon changes applied',
    );
    this.logWarnings(newWarnings);
  }

  /** Each distinct warning is logged when it appears (again: after it went away). */
  private logWarnings(warnings: AppWarning[]): void {
    let logged = 0;
    for (const w of warnings) {
      if (logged < 50) this.log.warn({ app: w.app }, `marathon app ${w.app}: ${w.message}`);
      logged++;
    }
    if (logged > 50) this.log.warn({ more: logged - 50 }, `${logged - 50} more marathon app warnings (see GET /v1/providers)`);
  }

  // -------------------------------------------------------------------------------------------------
  // HTTP

  private eventsUrl(base: URL): URL {
    const u = apiUrl(base, '/v2/events');
    for (const t of MARATHON_EVENT_TYPES) u.searchParams.append('event_type', t);
    u.searchParams.set('plan-format', 'light');
    return u;
  }

  private agentFor(u: URL): http.Agent {
    return u.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
  }

  private async getJson(url: URL): Promise<unknown> {
    return parseAnswer(url, await this.getBody(url));
  }

  /**
   * The apps of a `/v2/apps` answer, each with the digest of its bytes and, when those bytes are what the
   * last full sync read and nothing changed the app since, what that sync kept (then it is not parsed).
   * An answer whose apps cannot be placed without parsing is parsed whole, as before.
   */
  private readApps(url: URL, body: Buffer): Array<{ raw: unknown; digest?: string; known?: SyncedApp }> {
    const ranges = memberElements(body, 'apps');
    if (!ranges) {
      const whole = parseAnswer(url, body);
      if (!isObject(whole) || !Array.isArray(whole.apps)) throw new MarathonHttpError(`${redactUrl(url)}: the answer has no "apps" list`);
      return (whole.apps as unknown[]).map((raw) => ({ raw }));
    }
    const out: Array<{ raw: unknown; digest?: string; known?: SyncedApp }> = [];
    for (const [start, end] of ranges) {
      const bytes = body.subarray(start, end);
      const digest = createHash('sha1').update(bytes).digest('base64');
      const known = this.syncedApps.get(digest);
      if (
        known &&
        !this.changedByEvents.has(known.id) &&
        this.apps.get(known.id) === known.raw &&
        this.assembly.piece(known.id) === known.piece
      ) {
        out.push({ raw: known.raw, digest, known });
        continue;
      }
      out.push({ raw: parseAnswer(url, bytes), digest });
    }
    return out;
  }

  /** The body of a 200 answer; an error that says what Marathon answered otherwise. */
  private getBody(url: URL, into?: BodyBuffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.stopped) {
        reject(new Error('provider stopped'));
        return;
      }
      const lib = url.protocol === 'https:' ? https : http;
      const req = lib.request(url, {
        method: 'GET',
        agent: this.agentFor(url),
        headers: { accept: 'application/json', 'accept-encoding': 'gzip', ...this.headers },
        ...this.tlsOpts,
      });
      this.inflight.add(req);
      const timer = setTimeout(
        () => req.destroy(new MarathonHttpError(`${redactUrl(url)}: no complete answer within ${this.o.requestTimeoutMs} ms`)),
        this.o.requestTimeoutMs,
      );
      const done = (err: Error | undefined, value?: Buffer) => {
        clearTimeout(timer);
        this.inflight.delete(req);
        if (err) reject(err);
        else resolve(value as Buffer);
      };
      req.on('error', (err) => done(err));
      req.on('response', (res) => {
        const stream = /\bgzip\b/i.test(String(res.headers['content-encoding'] ?? '')) ? res.pipe(zlib.createGunzip()) : res;
        const chunks: Buffer[] = [];
        const plain = stream === res;
        if (into) into.begin(plain ? Number(res.headers['content-length']) : NaN);
        stream.on('data', (c: Buffer) => (into ? into.add(c) : chunks.push(c)));
        stream.on('error', (err: Error) => done(err));
        res.on('aborted', () => done(new MarathonHttpError(`${redactUrl(url)}: answer cut short`)));
        stream.on('end', () => {
          const body = into ? into.bytes() : Buffer.concat(chunks);
          if (res.statusCode !== 200) {
            const text = body.toString('utf8');
            let message = text.slice(0, 300).trim();
            try {
              const j = JSON.parse(text) as unknown;
              if (isObject(j) && typeof j.message === 'string') message = j.message;
            } catch {
              // not JSON: keep the text
            }
            done(new MarathonHttpError(`${redactUrl(url)}: HTTP ${res.statusCode}${message ? `: ${message}` : ''}`, res.statusCode));
            return;
          }
          done(undefined, body);
        });
      });
      req.end();
    });
  }

  /** Look up agents named by host name (not IP) that are not cached, or cached too long ago. */
  private async resolveHosts(apps: readonly unknown[]): Promise<void> {
    const now = Date.now();
    const want = new Set<string>();
    for (const app of apps) {
      if (!isObject(app) || !Array.isArray(app.tasks)) continue;
      for (const t of app.tasks as unknown[]) {
        if (!isObject(t) || typeof t.host !== 'string' || t.host === '') continue;
        const h = t.host;
        if (want.has(h) || isIP(h) !== 0) continue;
        const c = this.hostCache.get(h);
        if (c && now - c.at < this.o.hostCacheMs) continue;
        want.add(h);
      }
    }
    if (want.size === 0) return;
    await Promise.all(
      [...want].map(async (h) => {
        const ip = await lookupHost(h);
        this.hostCache.set(h, { ip, at: Date.now() });
      }),
    );
  }
}

/** An agent's IP from its host name (IPv4 first, as marathon-lb's gethostbyname), or null. 2 s at most. */
export async function lookupHost(host: string): Promise<string | null> {
  const attempt = (family: 0 | 4): Promise<string | null> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 2000);
      dns.lookup(host, { family }, (err, address) => {
        clearTimeout(timer);
        resolve(err ? null : address);
      });
    });
  return (await attempt(4)) ?? (await attempt(0));
}

/** Marathon task ids: `app.<uuid>` (instance id: the same) or `app.instance-<uuid>._app.<n>` (instance `app.marathon-<uuid>`). */
export function taskMatches(t: MarathonTask, taskId?: string, instanceId?: string): boolean {
  const id = typeof t.id === 'string' ? t.id : '';
  if (taskId !== undefined && id === taskId) return true;
  if (instanceId === undefined || id === '') return false;
  const want = instanceId.replace(/^instance \[(.*)\]$/, '$1');
  if (id === want) return true;
  const stem = id.replace(/\._app\.\d+$/, '');
  if (stem === want || stem.replace('.instance-', '.marathon-') === want) return true;
  for (const r of Array.isArray(t.healthCheckResults) ? t.healthCheckResults : []) {
    if (isObject(r) && typeof r.instanceId === 'string' && r.instanceId.replace(/^instance \[(.*)\]$/, '$1') === want) return true;
  }
  return false;
}

/** App ids a deployment event's plan touches (`steps[].actions[].app`, old `steps[].app`, `currentStep.actions[].app`). */
export function appsOfDeployment(d: Json): string[] {
  const ids = new Set<string>();
  const addActions = (step: unknown) => {
    if (!isObject(step)) return;
    if (typeof step.app === 'string') ids.add(normaliseAppId(step.app));
    if (Array.isArray(step.actions))
      for (const a of step.actions) if (isObject(a) && typeof a.app === 'string') ids.add(normaliseAppId(a.app));
  };
  const plan = isObject(d.plan) ? d.plan : undefined;
  if (plan && Array.isArray(plan.steps)) for (const s of plan.steps) addActions(s);
  addActions(d.currentStep);
  ids.delete('/');
  return [...ids];
}

/** `http://h:8080/marathon` + `/v2/apps` → `http://h:8080/marathon/v2/apps` (DC/OS serves Marathon under a prefix). */
function apiUrl(base: URL, path: string): URL {
  return new URL(`${base.origin}${base.pathname.replace(/\/+$/, '')}${path}`);
}

/** How long after a sync the prints it did not make are made (warmPrints), ms. */
const PRINT_WARM_DELAY_MS = 3_000;

/** Per translation: each service's JSON, and a fingerprint of all the app contributes (made once). */
const prints = new WeakMap<AppTranslation, { services: Map<string, string>; fp: string }>();

function printOf(p: AppTranslation): { services: Map<string, string>; fp: string } {
  let x = prints.get(p);
  if (!x) {
    const services = new Map<string, string>();
    for (const { name, service } of p.services) services.set(name, JSON.stringify(service));
    const fp = JSON.stringify([[...services], p.routes, p.entrypoints, p.warnings, p.tasks]);
    prints.set(p, (x = { services, fp }));
  }
  return x;
}

/**
 * `p`, the app's translation now, against `old`, the cached one: `old` itself when they are equal, else
 * `p` with every service that equals old's replaced by old's object (what the sink was handed, so an
 * unchanged service is the same object in every snapshot and is named in no delta).
 */
function reuse(p: AppTranslation, old: AppTranslation | undefined): AppTranslation {
  // A new app has nothing to compare with: its print is made when it is compared (see warmPrints).
  if (!old) return p;
  const now = printOf(p);
  const was = printOf(old);
  if (now.fp === was.fp) return old;
  const olds = new Map(old.services.map((s) => [s.name, s.service]));
  p.services = p.services.map((s) => {
    const o = olds.get(s.name);
    return o !== undefined && was.services.get(s.name) === now.services.get(s.name) ? { name: s.name, service: o } : s;
  });
  return p;
}

/** JSON of an answer (or of one app's bytes in it); an error naming the url otherwise. */
function parseAnswer(url: URL, bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new MarathonHttpError(`${redactUrl(url)}: the answer is not JSON (${(err as Error).message})`);
  }
}

function errText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
