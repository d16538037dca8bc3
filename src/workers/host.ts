/**
 * The control process's side of the data-plane workers: what `up()` uses instead of planes of its own
 * when the supervisor runs it (src/workers/supervisor.ts).
 *
 * Each served table is encoded once (a compact change when the workers serve the one before it,
 * src/workers/wire.ts) and broadcast; each worker answers with the version it applied. A version counts
 * as served — `/v1/table`, `/readyz`, the instance record, the `table served` log line — only when every
 * live worker has applied it. A worker that starts (or restarts) is sent the certificates, the session keys
 * and the whole current table; it is live once it has applied one. Planes' api answers are asked of one
 * live worker, the leader when it is live; `/metrics` is one scrape: the control's registry and every
 * worker's, summed by prom-client's aggregator (counters add up; per-worker gauges such as open connections
 * add up too; a metric may say otherwise, as the endpoint_up gauges do: their minimum).
 *
 * Health verdicts: only the leader (worker 0) probes. Its transitions come here; the DOWN ones are kept
 * for the endpoints of the current table (src/workers/verdicts.ts), and each is handed to every other
 * worker. A worker that starts is handed the DOWN ones before its first table.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import type { DataPlane, PlaneState, PlaneStatus } from '../model/plane.js';
import type { RoutingTable, TableChange } from '../model/types.js';
import type { Logger } from '../telemetry/log.js';
import type { Registry } from '../telemetry/metrics.js';
import {
  LEADER_WORKER,
  NO_TABLE_YET,
  type AutoCertificates,
  type ControlToSupervisor,
  type FromWorker,
  type PlaneVerdict,
  type SessionKeyMaterial,
  type SupervisorToControl,
  type ToWorker,
  type WorkerInit,
} from './messages.js';
import { SharedVerdicts } from './verdicts.js';
import { encodeTable, identityChange, type WholeTableMessage } from './wire.js';

/**
 * A whole table (megabytes at cluster size) goes as JSON text: the supervisor relays one string instead of
 * parsing and re-serialising the whole object graph once per worker.
 */
/** How long a whole table sent to a worker counts as on its way (see `want-table`), ms. */
const WHOLE_IN_FLIGHT_MS = 60_000;

function isWhole(msg: ToWorker): msg is WholeTableMessage {
  return msg.t === 'table' && msg.whole;
}

/** The IPC channel to the supervisor (`process` in the control process). */
export interface SupervisorChannel {
  send(msg: ControlToSupervisor): unknown;
  on(event: 'message', fn: (msg: SupervisorToControl) => void): unknown;
  off(event: 'message', fn: (msg: SupervisorToControl) => void): unknown;
}

interface WorkerState {
  w: number;
  pid: number;
  /** The version it applied last (0: none yet; not live). */
  version: number;
  planes: PlaneStatus[];
}

export interface WorkerPlanesOptions {
  channel: SupervisorChannel;
  count: number;
  init: WorkerInit;
  /** Names of the planes the workers run (src/planes.ts), for status before the first report. */
  planes: string[];
  logger: Logger;
  registry: Registry;
  /** Time to wait for an rpc or metrics answer, ms. Default 5 000. */
  rpcTimeoutMs?: number;
  /**
   * A directory of the control's own (under the data dir) where whole tables are written for the workers
   * to read, instead of going through the supervisor as JSON text over two IPC hops (each side encoding and
   * decoding megabytes: ~0.8 s of a start at 10k services). Absent, or when a write fails: the text.
   */
  spoolDir?: string;
}

export class WorkerPlanes {
  private readonly log: Logger;
  private readonly workers = new Map<number, WorkerState>();
  /** The newest table handed over, and every one not yet applied by all (by version). */
  private latest: RoutingTable | undefined;
  private readonly pending = new Map<number, RoutingTable>();
  private servedTable: RoutingTable | undefined;
  private readonly servedListeners = new Set<(t: RoutingTable) => void>();
  private certs: AutoCertificates | undefined;
  private keys: SessionKeyMaterial | undefined;
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly onMessage = (msg: SupervisorToControl) => this.receive(msg);
  private stopped: Promise<void> | undefined;
  private stopWaiters: Array<() => void> = [];
  private startFailed: ((err: Error) => void) | undefined;
  private starting: { version: number; done: Promise<void> } | undefined;
  private readonly appliedWaiters = new Set<() => void>();
  /** Whole-table files written to spoolDir, oldest first (the last two are kept). */
  private readonly spooled: string[] = [];
  /** The whole table last sent to each worker (its version, when): one asked for while it is on its way is not sent twice. */
  private readonly wholeSent = new Map<number, { version: number; at: number }>();
  /** The leader's DOWN verdicts on the endpoints of `latest`. */
  private readonly verdicts = new SharedVerdicts();
  readonly planes: DataPlane[];

  constructor(private readonly opts: WorkerPlanesOptions) {
    this.log = opts.logger.child({ component: 'workers' });
    opts.channel.on('message', this.onMessage);
    this.planes = opts.planes.map((name) => this.proxy(name));
    if (opts.spoolDir !== undefined) {
      try {
        mkdirSync(opts.spoolDir, { recursive: true, mode: 0o700 });
        // What a control before us left (it did not stop cleanly).
        for (const f of readdirSync(opts.spoolDir)) if (f.startsWith('table-')) rmSync(path.join(opts.spoolDir, f), { force: true });
      } catch (err) {
        this.log.warn({ err, dir: opts.spoolDir }, 'workers: the table spool directory is not usable; whole tables go over IPC');
      }
    }
    opts.channel.send({ t: 'workers', count: opts.count, init: opts.init });
  }

  /** The newest table every live worker applies (undefined before the first). */
  served(): RoutingTable | undefined {
    return this.servedTable;
  }

  /** Called with each table once every live worker applies it. */
  onServed(fn: (t: RoutingTable) => void): () => void {
    this.servedListeners.add(fn);
    return () => this.servedListeners.delete(fn);
  }

  /** Hand the workers a served table (once per version, whichever plane proxy is called first). */
  publish(table: RoutingTable, change?: TableChange): void {
    if (this.latest && table.version === this.latest.version && table.hash === this.latest.hash) return;
    const previous = this.latest;
    this.latest = table;
    this.pending.set(table.version, table);
    // A stage-only change (a VIP address moved) comes without `change`: found by identity, not resent whole.
    const what = change ?? (previous ? identityChange(table, previous) : undefined);
    this.verdicts.retain(table, what);
    this.broadcast(encodeTable(table, previous, what) as ToWorker);
  }

  /**
   * Resolves when the workers have applied `table` (the first one: when `count` workers serve it); rejects
   * when a worker's plane cannot serve at all (its fixed listen address is taken), as a local plane would.
   */
  start(table: RoutingTable): Promise<void> {
    // Every plane proxy starts on the same table: one wait for all of them.
    if (this.starting?.version === table.version) return this.starting.done;
    this.publish(table);
    const done = new Promise<void>((resolve, reject) => {
      // Every worker asked for applies it (one that dies meanwhile is replaced and handed the table).
      const check = (): boolean => [...this.workers.values()].filter((w) => w.version >= table.version).length >= this.opts.count;
      const settle = (err?: Error): void => {
        this.appliedWaiters.delete(onApplied);
        this.startFailed = undefined;
        if (err) reject(err);
        else resolve();
      };
      const onApplied = (): void => {
        if (check()) settle();
      };
      this.startFailed = settle;
      this.appliedWaiters.add(onApplied);
      onApplied();
    });
    this.starting = { version: table.version, done };
    return done;
  }

  setAutoCertificates(certs: AutoCertificates): void {
    this.certs = certs;
    this.broadcast({ t: 'certs', certs });
  }

  setSessionKeys(keys: SessionKeyMaterial): void {
    this.keys = keys;
    this.broadcast({ t: 'session-keys', keys });
  }

  /**
   * Ask one live worker's plane a registered question (src/planes.ts `queries`): the leader when it is
   * live (what it answers of health is what it found), else another.
   */
  query<T>(plane: string, method: string, args: unknown[]): Promise<T> {
    const leader = this.workers.get(LEADER_WORKER);
    const w = leader && leader.version > 0 ? leader : this.live()[0];
    if (!w) return Promise.reject(new PorticoError(ErrorCodes.WORKER_UNAVAILABLE, `no data-plane worker serves ${plane} yet`, 503));
    return this.call<T>(w.w, (id) => ({ t: 'rpc', id, plane, method, args }));
  }

  /** One Prometheus exposition: this process's registry and every live worker's, aggregated. */
  async metrics(registry: Registry): Promise<{ contentType: string; text: string }> {
    const own = await registry.getMetricsAsJSON();
    const theirs = await Promise.all(
      this.live().map((w) => this.call<unknown>(w.w, (id) => ({ t: 'metrics', id })).catch(() => undefined)),
    );
    const all = [own, ...theirs.filter((j) => j !== undefined)] as Parameters<typeof AggregatorRegistry.aggregate>[0];
    const merged = AggregatorRegistry.aggregate(all);
    return { contentType: merged.contentType, text: await merged.metrics() };
  }

  /** Tell every worker to drain and stop; resolves when the supervisor reports them gone. */
  stop(drainMs: number): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      this.stopWaiters.push(resolve);
      this.broadcast({ t: 'stop', drainMs });
      if (this.workers.size === 0) this.finishStop();
    });
    return this.stopped;
  }

  /** The supervisor is gone, and with it every worker (they leave when it does): stop waiting for them. */
  detach(): void {
    this.workers.clear();
    this.stopped ??= Promise.resolve();
    this.finishStop();
  }

  close(): void {
    this.opts.channel.off('message', this.onMessage);
    for (const f of this.spooled.splice(0)) rmSync(f, { force: true });
    for (const c of this.calls.values()) {
      clearTimeout(c.timer);
      c.reject(new Error('closed'));
    }
    this.calls.clear();
  }

  /** Workers, with their pid and the version they apply (for `GET /v1/planes` and tests). */
  describe(): Array<{ worker: number; pid: number; version: number; live: boolean }> {
    return [...this.workers.values()].map((w) => ({ worker: w.w, pid: w.pid, version: w.version, live: w.version > 0 }));
  }

  private live(): WorkerState[] {
    return [...this.workers.values()].filter((w) => w.version > 0);
  }

  private receive(msg: SupervisorToControl): void {
    switch (msg.t) {
      case 'worker-up': {
        if (msg.w === LEADER_WORKER && this.workers.get(msg.w)?.pid !== msg.pid) this.verdicts.leaderStarted();
        this.workers.set(msg.w, { w: msg.w, pid: msg.pid, version: 0, planes: [] });
        this.wholeSent.delete(msg.w);
        this.log.info({ worker: msg.w, workerPid: msg.pid }, 'data-plane worker started');
        if (this.stopped) return this.send(msg.w, { t: 'stop', drainMs: 0 });
        if (this.certs) this.send(msg.w, { t: 'certs', certs: this.certs });
        if (this.keys) this.send(msg.w, { t: 'session-keys', keys: this.keys });
        this.handOver(msg.w);
        return;
      }
      case 'worker-exit': {
        const had = this.workers.get(msg.w);
        if (had?.pid === msg.pid) this.workers.delete(msg.w);
        if (!this.stopped)
          this.log.error({ worker: msg.w, workerPid: msg.pid, code: msg.code, signal: msg.signal }, 'data-plane worker exited');
        if (this.stopped && this.workers.size === 0) this.finishStop();
        this.advance(); // the version may now be applied by every live one
        return;
      }
      case 'from-worker':
        return this.fromWorker(msg.w, msg.msg);
      default:
        return; // stop / reload are the control's (src/workers/control.ts)
    }
  }

  private fromWorker(w: number, msg: FromWorker): void {
    switch (msg.t) {
      case 'applied': {
        const state = this.workers.get(w);
        if (!state) return;
        state.version = msg.version;
        state.planes = msg.planes;
        if (w === LEADER_WORKER) this.verdicts.leaderApplied(msg.version);
        this.advance();
        for (const fn of [...this.appliedWaiters]) fn();
        return;
      }
      case 'start-failed':
        this.startFailed?.(new PorticoError(ErrorCodes.LISTEN_FAILED, msg.message, 500));
        return;
      case 'want-table': {
        // A worker that has had no table yet asks every few seconds; at cluster size on a busy machine the
        // whole table can take longer than that to reach it. The one on its way is not sent again (each
        // copy is megabytes to encode, relay and decode); a minute later it is, in case it never arrives.
        const sent = this.wholeSent.get(w);
        if (
          msg.reason === NO_TABLE_YET &&
          sent !== undefined &&
          sent.version === this.latest?.version &&
          Date.now() - sent.at < WHOLE_IN_FLIGHT_MS
        ) {
          this.log.info({ worker: w, version: sent.version }, 'worker asks for the whole table; it is on its way');
          return;
        }
        this.log.info({ worker: w, have: msg.have, reason: msg.reason }, 'worker asks for the whole table');
        if (msg.have === 0) this.handOver(w);
        else if (this.latest) this.send(w, encodeTable(this.latest, undefined, undefined) as ToWorker);
        return;
      }
      case 'health':
        this.onVerdicts(w, msg.verdicts);
        return;
      case 'rpc-ok':
      case 'metrics-ok':
      case 'rpc-err': {
        const c = this.calls.get(msg.id);
        if (!c) return;
        this.calls.delete(msg.id);
        clearTimeout(c.timer);
        if (msg.t === 'rpc-err') c.reject(new PorticoError(ErrorCodes.WORKER_UNAVAILABLE, msg.message, 503));
        else c.resolve(msg.t === 'rpc-ok' ? msg.value : msg.json);
        return;
      }
    }
  }

  /**
   * A worker with no table yet gets the DOWN verdicts, then the whole table: its planes take the verdicts
   * as the table creates their checks, so it never serves a DOWN endpoint.
   */
  private handOver(w: number): void {
    if (!this.latest) return;
    const down = this.verdicts.replay();
    if (down.length > 0) this.send(w, { t: 'health', verdicts: down });
    this.send(w, encodeTable(this.latest, undefined, undefined) as ToWorker);
  }

  /** The leader's verdicts: kept (the DOWN ones), and handed to every other worker, live or starting. */
  private onVerdicts(w: number, verdicts: PlaneVerdict[]): void {
    if (w !== LEADER_WORKER) {
      this.log.warn({ worker: w }, 'health verdicts from a worker that does not probe; ignored');
      return;
    }
    const news = verdicts.filter((v) => this.verdicts.record(v));
    if (news.length === 0) return;
    this.log.debug({ verdicts: news.length, down: this.verdicts.size }, 'health verdicts handed to the workers');
    for (const other of this.workers.values()) if (other.w !== w) this.send(other.w, { t: 'health', verdicts: news });
  }

  /** Serve the newest version every live worker has applied. */
  private advance(): void {
    const live = this.live();
    if (live.length === 0) return;
    const min = Math.min(...live.map((w) => w.version));
    const table = this.pending.get(min) ?? (this.latest?.version === min ? this.latest : undefined);
    if (!table || (this.servedTable && this.servedTable.version === min)) return;
    for (const v of this.pending.keys()) if (v < min) this.pending.delete(v);
    this.servedTable = table;
    this.log.debug({ version: table.version, hash: table.hash.slice(0, 12), workers: live.length }, 'table served');
    for (const fn of [...this.servedListeners]) {
      try {
        fn(table);
      } catch (err) {
        this.log.error({ err }, 'served-table listener threw');
      }
    }
  }

  private finishStop(): void {
    for (const r of this.stopWaiters.splice(0)) r();
  }

  private call<T>(w: number, make: (id: number) => ToWorker): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new PorticoError(ErrorCodes.WORKER_UNAVAILABLE, `data-plane worker ${w} did not answer`, 503));
      }, this.opts.rpcTimeoutMs ?? 5_000);
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.send(w, make(id));
    });
  }

  private send(w: number, msg: ToWorker): void {
    if (!isWhole(msg)) {
      this.opts.channel.send({ t: 'to-worker', w, msg });
      return;
    }
    this.wholeSent.set(w, { version: msg.version, at: Date.now() });
    const file = this.spool(msg);
    if (file) this.opts.channel.send({ t: 'to-worker', w, msg: { t: 'table-file', file: file.path, version: msg.version } });
    else this.opts.channel.send({ t: 'to-worker-text', w, text: JSON.stringify(msg) });
  }

  private broadcast(msg: ToWorker): void {
    if (!isWhole(msg)) {
      this.opts.channel.send({ t: 'to-workers', msg });
      return;
    }
    for (const w of this.workers.keys()) this.wholeSent.set(w, { version: msg.version, at: Date.now() });
    const began = performance.now();
    const file = this.spool(msg);
    const text = file ? undefined : JSON.stringify(msg);
    const encodedMs = performance.now() - began;
    if (file) this.opts.channel.send({ t: 'to-workers', msg: { t: 'table-file', file: file.path, version: msg.version } });
    else this.opts.channel.send({ t: 'to-workers-text', text: text as string });
    this.log.debug(
      {
        version: msg.version,
        bytes: file?.bytes ?? text?.length,
        ...(file && { file: file.path }),
        encodeMs: Math.round(encodedMs),
        sendMs: Math.round(performance.now() - began - encodedMs),
      },
      'whole table sent',
    );
  }

  /**
   * The whole table in a file of spoolDir (written once per version; the last two are kept, so a worker
   * still to read the one before finds it), or undefined: no spoolDir, or it could not be written.
   */
  private spool(msg: WholeTableMessage): { path: string; bytes: number } | undefined {
    const dir = this.opts.spoolDir;
    if (dir === undefined) return undefined;
    const file = path.join(dir, `table-${msg.version}-${msg.hash.slice(0, 16)}.json`);
    if (this.spooled.at(-1) === file) return { path: file, bytes: NaN };
    try {
      const text = JSON.stringify(msg);
      writeFileSync(file, text, { mode: 0o600 });
      this.spooled.push(file);
      while (this.spooled.length > 2) rmSync(this.spooled.shift() as string, { force: true });
      return { path: file, bytes: text.length };
    } catch (err) {
      this.log.warn({ err, file }, 'workers: could not write the table for the workers; it goes over IPC');
      return undefined;
    }
  }

  /** A DataPlane the composition root drives like a local one; the work happens in the workers. */
  private proxy(name: string): DataPlane {
    return {
      name,
      start: (table) => this.start(table),
      apply: (table, change) => this.publish(table, change),
      stop: (drainMs) => this.stop(drainMs),
      status: () => this.status(name),
    };
  }

  /** A plane's status over all workers: the worst state, the oldest version, the first error. */
  private status(name: string): PlaneStatus {
    const reports = [...this.workers.values()].map((w) => w.planes.find((p) => p.name === name));
    const rank: Record<PlaneState, number> = { serving: 0, starting: 1, error: 2, stopped: 3 };
    let state: PlaneState = this.workers.size === 0 ? 'starting' : 'serving';
    let version = Infinity;
    let error: string | undefined;
    let listeners: string[] = [];
    for (const r of reports) {
      const s: PlaneState = r?.state ?? 'starting';
      if (rank[s] > rank[state]) state = s;
      version = Math.min(version, r?.tableVersion ?? 0);
      error ??= r?.error;
      if (r && listeners.length === 0) listeners = r.listeners;
    }
    return { name, state, listeners, tableVersion: Number.isFinite(version) ? version : 0, ...(error !== undefined && { error }) };
  }
}
