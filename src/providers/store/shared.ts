/**
 * The shared config: services, routes and entrypoints pushed through the admin api of any one instance
 * (`PUT /v1/config/shared`) and served by every instance pointed at the same store.
 *
 * One store key holds it, `portico/config/shared`: the text as it was pushed (for `GET`, so an operator
 * gets back what they sent) and the snapshot the accepting instance compiled from it. Every instance's
 * SharedConfigProvider watches that key and hands the snapshot to its aggregator, so a push reaches every
 * data plane through the store's watch (Redis: one XREAD wake-up) and the usual debounce.
 *
 * Only the dynamic sections may be pushed. `data`, `store`, `api`, `dns`, `l7`, `overlay` and `vips` say how
 * one machine runs, and stay in its config file; a pushed document naming them is refused with the path.
 *
 * What is handed to the aggregator: each push is a whole snapshot in the store; the provider compares it with
 * what it handed over last, service by service (by canonical text: an unchanged service keeps the object
 * handed over before) and route by route, and hands over what differs (src/providers/sent.ts): a delta when
 * the sink takes changes, else a whole snapshot; nothing when a push changes nothing. A route is named by
 * its id, or `shared/<position>` (what the aggregator names a route without one), so a route inserted in
 * the middle of the list renames, and so hands over, every route after it.
 *
 * Static stability: when the store cannot be reached the provider keeps the last snapshot it sent (the
 * aggregator keeps serving it), reports `degraded` with the reason, and on reconnection the store's watch
 * delivers a full resync that puts it back in step without a restart.
 */
import { configToSnapshot, parseConfigText, readConfigValue } from '../../config/index.js';
import { ValidationError, type ValidationIssue } from '../../model/errors.js';
import { canonicalJson } from '../../model/canonical.js';
import type { RoutingTable, Snapshot } from '../../model/types.js';
import type { Store, Watch, WatchEvent } from '../../store/types.js';
import { silentLogger, type Logger } from '../../telemetry/log.js';
import { Outbox, type IdRoute, type Knowledge, type LocalService, type Touched } from '../sent.js';
import type { Provider, ProviderState, ProviderStatus, SnapshotSink } from '../types.js';

export const SHARED_CONFIG_KEY = 'portico/config/shared';
export const SHARED_PROVIDER = 'shared';
/**
 * Above the file provider (100): what an operator pushes to the whole cluster wins a conflict with what
 * one machine's file says, so every instance serves the same thing. Conflicts are still reported.
 */
export const SHARED_PRIORITY = 110;
/** Entrypoints a pushed route may name without defining them: the defaults every config has. */
const DEFAULT_ENTRYPOINTS = ['web', 'websecure'];
/** The sections a pushed config may hold. */
export const SHARED_SECTIONS = ['services', 'routes', 'entrypoints'] as const;

export interface SharedConfigRecord {
  /** The document as pushed (YAML or JSON). */
  text: string;
  contentType: string;
  /** What the accepting instance compiled from it; every instance serves this. */
  snapshot: Snapshot;
  pushedAt: string;
  /** Instance id that accepted the push. */
  by: string;
}

/**
 * Validate a pushed document and compile it. Throws ValidationError (every issue, with its path) for a
 * document that is not valid config or that names a per-instance section.
 */
export function compileSharedConfig(text: string, opts: { baseDir?: string; entrypoints?: readonly string[] } = {}): Snapshot {
  // Within the config limits (a document past one is refused here, with its position); undefined when the
  // text is not YAML: parseConfigText reports the syntax error with its position.
  const raw = readConfigValue(text, 'pushed config');
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const issues: ValidationIssue[] = [];
    for (const key of Object.keys(raw)) {
      if (!(SHARED_SECTIONS as readonly string[]).includes(key)) {
        issues.push({
          path: `/${key}`,
          message: `a pushed config holds only ${SHARED_SECTIONS.join(', ')}; "${key}" is a per-instance setting: set it in each instance's config file`,
        });
      }
    }
    if (issues.length) throw new ValidationError(issues, 'pushed config');
  }
  // Routes may name the entrypoints instances define in their own files (`web`, `websecure` by default).
  const cfg = parseConfigText(text, {
    file: 'pushed config',
    extraEntrypoints: opts.entrypoints ?? DEFAULT_ENTRYPOINTS,
    ...(opts.baseDir !== undefined && { baseDir: opts.baseDir }),
  });
  return configToSnapshot(cfg, SHARED_PROVIDER);
}

export function emptySnapshot(provider = SHARED_PROVIDER): Snapshot {
  return { provider, services: {}, routes: [], entrypoints: {} };
}

export interface SharedConfigProviderOptions {
  store: Store;
  logger?: Logger;
  /** How long start() waits for the store's first answer before reporting an error. Default 5 s. */
  startTimeoutMs?: number;
}

export class SharedConfigProvider implements Provider {
  readonly name = SHARED_PROVIDER;
  readonly priority = SHARED_PRIORITY;
  private readonly log: Logger;
  private watch: Watch | undefined;
  private sink: SnapshotSink | undefined;
  private state: ProviderState = 'starting';
  private lastUpdate: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  /** Store revision of the record last sent (0: none pushed). */
  private sentRevision = 0;
  private sentMeta: { pushedAt: string; by: string } | undefined;
  private readonly revisionListeners = new Set<(revision: number) => void>();
  /** The shared config as last taken: services with their text, routes by id (in list order). */
  private services = new Map<string, { service: LocalService; text: string }>();
  private routes = new Map<string, { route: IdRoute; rank: string }>();
  private entrypoints: Snapshot['entrypoints'] = {};
  private warnings: NonNullable<Snapshot['warnings']> = [];
  private readonly outbox = new Outbox();
  private readonly knowledge: Knowledge = {
    service: (name) => this.services.get(name)?.service,
    route: (id) => this.routes.get(id),
    entrypoints: () => this.entrypoints,
    warnings: () => this.warnings,
    snapshot: () => {
      const snapshot: Snapshot = { provider: SHARED_PROVIDER, services: {}, routes: [], entrypoints: this.entrypoints };
      for (const [name, x] of this.services) snapshot.services[name] = x.service;
      for (const { route } of this.routes.values()) snapshot.routes.push(route);
      if (this.warnings.length > 0) snapshot.warnings = this.warnings;
      return snapshot;
    },
  };

  constructor(private readonly opts: SharedConfigProviderOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'provider', provider: SHARED_PROVIDER });
  }

  /** The store revision of the shared config this provider last handed on (0 when nothing is pushed). */
  get revision(): number {
    return this.sentRevision;
  }

  /** Called after each snapshot is handed to the sink, with its store revision. */
  onRevision(cb: (revision: number) => void): () => void {
    this.revisionListeners.add(cb);
    return () => this.revisionListeners.delete(cb);
  }

  start(sink: SnapshotSink): Promise<void> {
    this.sink = sink;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.fail(`no answer from the ${this.opts.store.kind} store within ${this.opts.startTimeoutMs ?? 5000} ms`);
        resolve();
      }, this.opts.startTimeoutMs ?? 5000);
      timer.unref();
      this.watch = this.opts.store.watch(SHARED_CONFIG_KEY, (ev) => {
        this.onEvent(ev);
        if (ev.type === 'resync') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  async stop(): Promise<void> {
    this.watch?.close();
    this.watch = undefined;
    this.sink = undefined;
    this.state = 'stopped';
  }

  status(): ProviderStatus {
    let state = this.state;
    let lastError = this.lastError;
    let lastErrorAt = this.lastErrorAt;
    const health = this.opts.store.health();
    if (state === 'ok' && !health.ok) {
      state = 'degraded';
      lastError = `store ${health.target} unreachable${health.since ? ` since ${health.since}` : ''}${health.error ? ` (${health.error})` : ''}; serving the last shared config (revision ${this.sentRevision})`;
      lastErrorAt = health.since ?? lastErrorAt;
    }
    const s: ProviderStatus = { name: this.name, priority: this.priority, state };
    if (this.lastUpdate) s.lastUpdate = this.lastUpdate;
    if (lastError) s.lastError = lastError;
    if (lastErrorAt) s.lastErrorAt = lastErrorAt;
    s.details = { key: SHARED_CONFIG_KEY, revision: this.sentRevision, ...(this.sentMeta ?? {}) };
    return s;
  }

  private onEvent(ev: WatchEvent): void {
    if (ev.type === 'resync') {
      const entry = ev.entries.find((e) => e.key === SHARED_CONFIG_KEY);
      if (entry) this.accept(entry.value, entry.revision);
      else this.send(emptySnapshot(), 0, undefined);
    } else if (ev.key === SHARED_CONFIG_KEY) {
      if (ev.type === 'put') this.accept(ev.entry.value, ev.entry.revision);
      else this.send(emptySnapshot(), ev.revision, undefined);
    }
  }

  private accept(value: Buffer, revision: number): void {
    let rec: SharedConfigRecord;
    try {
      rec = JSON.parse(value.toString('utf8')) as SharedConfigRecord;
      const snap = rec?.snapshot;
      if (!snap || typeof snap.services !== 'object' || !Array.isArray(snap.routes) || typeof snap.entrypoints !== 'object') {
        throw new Error('record has no snapshot');
      }
    } catch (err) {
      // Written by a Portico (or a person) we do not understand: keep serving what we had.
      this.fail(
        `${SHARED_CONFIG_KEY} at revision ${revision} is not a shared config record (${(err as Error).message}); keeping revision ${this.sentRevision}`,
      );
      return;
    }
    this.send({ ...rec.snapshot, provider: SHARED_PROVIDER }, revision, { pushedAt: rec.pushedAt, by: rec.by });
  }

  private send(snapshot: Snapshot, revision: number, meta: { pushedAt: string; by: string } | undefined): void {
    if (!this.sink) return;
    this.sentRevision = revision;
    this.sentMeta = meta;
    this.state = 'ok';
    this.lastError = undefined;
    this.lastErrorAt = undefined;
    this.lastUpdate = new Date().toISOString();
    const touched = this.take(snapshot);
    let sent;
    try {
      sent = this.outbox.send(this.sink, this.knowledge, touched);
    } catch (err) {
      this.fail(`the shared config at revision ${revision} was not accepted: ${(err as Error).message}`);
      return;
    }
    this.log.info(
      {
        revision,
        services: this.services.size,
        routes: this.routes.size,
        by: meta?.by,
        sent: sent.kind,
        servicesChanged: sent.services,
        routesChanged: sent.routes,
      },
      'shared config',
    );
    for (const cb of this.revisionListeners) cb(revision);
  }

  /** Make `snapshot` what this provider knows; returns every name and route id that may differ. */
  private take(snapshot: Snapshot): Touched {
    const services = new Map<string, { service: LocalService; text: string }>();
    for (const name of Object.keys(snapshot.services)) {
      const service = snapshot.services[name] as LocalService;
      const text = canonicalJson(service);
      const old = this.services.get(name);
      services.set(name, old !== undefined && old.text === text ? old : { service, text });
    }
    const routes = new Map<string, { route: IdRoute; rank: string }>();
    snapshot.routes.forEach((r, i) => {
      const id = r.id ?? `${SHARED_PROVIDER}/${i}`;
      // The aggregator serves the first of two routes with one id.
      if (!routes.has(id)) routes.set(id, { route: r.id === id ? (r as IdRoute) : { ...r, id }, rank: String(i) });
    });
    const touched: Touched = {
      services: new Set([...this.services.keys(), ...services.keys()]),
      routes: new Set([...this.routes.keys(), ...routes.keys()]),
      entrypoints: true,
      warnings: true,
    };
    this.services = services;
    this.routes = routes;
    this.entrypoints = snapshot.entrypoints;
    this.warnings = snapshot.warnings ?? [];
    return touched;
  }

  private fail(message: string): void {
    this.state = this.sentRevision > 0 || this.state === 'ok' ? 'degraded' : 'error';
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
    this.log.error({ error: message }, 'shared config not applied');
  }
}

/**
 * Which revision of the shared config this instance serves: the revision the provider last handed on,
 * once a served table built from that snapshot (its hash in the table's `sources`) is what the planes
 * serve. The instance record reports it, so `GET /v1/instances` can say which instance lags.
 */
export class SharedRevisionTracker {
  private sent: { hash: string | undefined; revision: number };
  private appliedRevision: number;
  private readonly off: () => void;
  private readonly listeners = new Set<() => void>();

  /** `inputs`: what holds the provider's latest snapshot (the aggregator); `tables`: what the planes serve now. */
  constructor(
    provider: SharedConfigProvider,
    inputs: { inputHash(provider: string): string | undefined },
    tables: { current(): RoutingTable },
  ) {
    this.sent = { hash: inputs.inputHash(provider.name), revision: provider.revision };
    this.appliedRevision = tables.current().sources[provider.name] === this.sent.hash ? this.sent.revision : 0;
    this.off = provider.onRevision((revision) => {
      this.sent = { hash: inputs.inputHash(provider.name), revision };
      // The same content as what is served (a re-push of the same text): no new table will come.
      if (tables.current().sources[provider.name] === this.sent.hash) this.apply(revision);
    });
  }

  get applied(): number {
    return this.appliedRevision;
  }

  /** Call `cb` whenever the applied revision moves. Returns unsubscribe. */
  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** A table is now served. */
  served(table: RoutingTable): void {
    if (table.sources[SHARED_PROVIDER] === this.sent.hash) this.apply(this.sent.revision);
  }

  close(): void {
    this.off();
    this.listeners.clear();
  }

  private apply(revision: number): void {
    if (revision === this.appliedRevision) return;
    this.appliedRevision = revision;
    for (const cb of this.listeners) cb();
  }
}
