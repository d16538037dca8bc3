/**
 * The file provider: the config file (config/portico.yaml) as a feed of services, routes and
 * entrypoints.
 *
 * Reload pipeline, as traefik's: file → parse + validate → snapshot → drop if unchanged → send. "Unchanged"
 * is equal content (deepEqual: key order and comments do not count) to the last snapshot sent; a walk of
 * both that stops at the first difference, where hashing the canonical text of each (as before) cost
 * a second a load at 10,000 services. At start the file is not parsed a second time: `parsed` is the
 * config `portico up` read from it a moment before, taken when the file still holds the same text.
 * A file that does not validate is refused as a whole and nothing is sent, so the last good table
 * keeps serving while the operator fixes the typo; status() and the log say exactly where it is.
 *
 * Watching: src/providers/dirwatch.ts (the directory, not the file, so rename-saves are seen; debounced;
 * re-armed when the directory comes back). Events are filtered on the file's base name.
 */
import { basename, dirname, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { configToSnapshot, parseConfigText, readConfigText } from '../../config/index.js';
import { sameConfigSnapshot, type ConfigSnapshot } from '../../config/snapshot.js';
import type { PorticoConfig } from '../../config/index.js';
import { ErrorCodes, PorticoError, ValidationError } from '../../model/errors.js';
import type { Snapshot } from '../../model/types.js';
import { silentLogger } from '../../telemetry/log.js';
import type { Logger } from '../../telemetry/log.js';
import { DirWatch } from '../dirwatch.js';
import type { Provider, ProviderState, ProviderStatus, SnapshotSink } from '../types.js';

export interface FileProviderOptions {
  /** The config file. Resolved to an absolute path. */
  path: string;
  /** Provider name in the table (`web@file`). Default `file`. */
  name?: string;
  /** Conflict priority; higher wins. Default 100. */
  priority?: number;
  logger?: Logger;
  /** Quiet time after the last change event before the file is read, ms. Default 25. */
  debounceMs?: number;
  /** Called with every accepted config whose content differs from the last one (and the first). */
  onConfig?: (cfg: PorticoConfig) => void;
  /**
   * The config parsed from this file already (at start, by `portico up`) and the text it was parsed from:
   * the first load takes it instead of parsing the file again when the file holds that text still.
   */
  parsed?: { text: string; config: PorticoConfig };
}

export const FILE_PROVIDER_DEFAULTS = {
  name: 'file',
  priority: 100,
  /** Long enough to merge the truncate and write events of an in-place save, short enough to feel instant. */
  debounceMs: 25,
  /** When the directory cannot be watched (it does not exist yet), try again this often, ms. */
  rearmMs: 1000,
} as const;

export class FileProvider implements Provider {
  readonly name: string;
  readonly priority: number;
  /** Absolute path of the watched file. */
  readonly file: string;

  private readonly dir: string;
  private readonly base: string;
  private readonly debounceMs: number;
  private readonly onConfig: ((cfg: PorticoConfig) => void) | undefined;
  private readonly log: Logger;
  /** `parsed` until the first load has looked at it. */
  private parsed: { text: string; config: PorticoConfig } | undefined;

  private sink: SnapshotSink | undefined;
  private readonly watcher: DirWatch;
  /** Loads run one at a time, in order: a reload never overtakes an earlier one. */
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  private state: ProviderState = 'starting';
  private lastUpdate: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  /** The last config whose snapshot was sent, and that snapshot: what a re-save is compared with and reuses. */
  private sent: ConfigSnapshot | undefined;
  /** The last config given to onConfig. */
  private given: PorticoConfig | undefined;
  private current: PorticoConfig | undefined;
  /** Whether the last accepted file had content: an empty read after it may be a save in progress. */
  private lastTextNonEmpty = false;

  constructor(opts: FileProviderOptions) {
    this.file = resolve(opts.path);
    this.dir = dirname(this.file);
    this.base = basename(this.file);
    this.name = opts.name ?? FILE_PROVIDER_DEFAULTS.name;
    this.priority = opts.priority ?? FILE_PROVIDER_DEFAULTS.priority;
    this.debounceMs = opts.debounceMs ?? FILE_PROVIDER_DEFAULTS.debounceMs;
    this.onConfig = opts.onConfig;
    this.parsed = opts.parsed;
    this.log = (opts.logger ?? silentLogger).child({ component: 'provider', provider: this.name });
    this.watcher = new DirWatch({
      dir: this.dir,
      matches: (name) => name === this.base,
      onChange: () => void this.reload(),
      debounceMs: this.debounceMs,
      rearmMs: FILE_PROVIDER_DEFAULTS.rearmMs,
      logger: this.log,
    });
  }

  /** The last accepted config, if any. */
  get config(): PorticoConfig | undefined {
    return this.current;
  }

  /** Resolves after the first load: sent, or refused and recorded in status() (and still watching). */
  async start(sink: SnapshotSink): Promise<void> {
    if (this.sink) throw new Error(`file provider ${this.name} is already started`);
    this.sink = sink;
    this.stopped = false;
    this.watcher.start();
    await this.reload();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.watcher.stop();
    // Let a load in flight finish (it will not send: stopped is set) so nothing runs after stop().
    await this.queue;
    this.state = 'stopped';
    this.sink = undefined;
  }

  /**
   * Read the file now (what SIGHUP does). Resolves true when the file was read and is valid — sent if it
   * changed — and false when it was refused (status() and the log say why). Never rejects.
   */
  reload(): Promise<boolean> {
    const run = this.queue
      .then(() => this.load())
      .catch((err: unknown) => {
        // A bug past validation (not a bad file): still refuse the load rather than break the chain.
        this.refuse(err);
        return false;
      });
    this.queue = run;
    return run;
  }

  status(): ProviderStatus {
    const status: ProviderStatus = { name: this.name, priority: this.priority, state: this.state, details: { file: this.file } };
    if (this.lastUpdate !== undefined) status.lastUpdate = this.lastUpdate;
    if (this.lastError !== undefined) status.lastError = this.lastError;
    if (this.lastErrorAt !== undefined) status.lastErrorAt = this.lastErrorAt;
    return status;
  }

  // -------------------------------------------------------------------------------------------------

  private async load(): Promise<boolean> {
    if (this.stopped) return false;
    let cfg: PorticoConfig;
    let nonEmpty: boolean;
    let text: string;
    try {
      text = await readConfigText(this.file);
      if (text.trim() === '' && this.lastTextNonEmpty) {
        // An in-place save truncates, then writes. An empty file is a valid (empty) config, so reading
        // between the two would withdraw every route; look again once the writer has had its time.
        await new Promise((r) => setTimeout(r, this.debounceMs * 2));
        text = await readConfigText(this.file);
      }
      nonEmpty = text.trim() !== '';
      const parsed = this.parsed;
      this.parsed = undefined;
      cfg = parsed?.text === text ? parsed.config : parseConfigText(text, { file: this.file });
    } catch (err) {
      this.refuse(err);
      return false;
    }
    if (this.stopped) return false;

    // What did not change is the last snapshot's objects (config/snapshot.ts): comparing costs a walk of
    // the config, not a hash of it, and the aggregator looks only at the services and routes that are new.
    const snapshot = configToSnapshot(cfg, this.name, this.sent);
    const changed = !this.sent || !sameConfigSnapshot(this.sent.snapshot, snapshot);
    if (changed) {
      if (!this.send(snapshot)) return false;
      this.sent = { cfg, snapshot };
      this.lastUpdate = new Date().toISOString();
      this.log.info(
        {
          file: this.file,
          hash: createHash('sha1').update(text).digest('hex').slice(0, 12),
          services: Object.keys(snapshot.services).length,
          routes: snapshot.routes.length,
        },
        'config loaded',
      );
    } else {
      this.log.debug({ file: this.file }, 'config unchanged');
    }
    this.state = 'ok';
    this.lastError = undefined;
    this.lastErrorAt = undefined;
    this.current = cfg;
    this.lastTextNonEmpty = nonEmpty;

    // A new snapshot means a new config; the same one may still come with other settings changed.
    if (this.given === undefined || changed || !isDeepStrictEqual(this.given, cfg)) {
      this.given = cfg;
      try {
        this.onConfig?.(cfg);
      } catch (err) {
        this.log.error({ err }, 'onConfig callback failed');
      }
    }
    return true;
  }

  /** Hand a snapshot to the sink; a throwing sink must not kill the watcher. */
  private send(snapshot: Snapshot): boolean {
    try {
      this.sink?.(snapshot);
      return true;
    } catch (err) {
      this.state = 'degraded';
      this.lastError = `the snapshot of ${this.file} was not accepted: ${(err as Error).message}`;
      this.lastErrorAt = new Date().toISOString();
      this.log.error({ err, file: this.file }, 'snapshot sink failed');
      return false;
    }
  }

  /** Record a refused or unreadable file. Nothing is sent: the last good snapshot keeps serving. */
  private refuse(err: unknown): void {
    const missing =
      err instanceof PorticoError &&
      err.code === ErrorCodes.CONFIG_READ &&
      (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    let message: string;
    if (missing) {
      message = `config file ${this.file} does not exist; watching for it to be created`;
      if (this.current) message += ' (serving the last good configuration meanwhile)';
    } else {
      message = err instanceof Error ? err.message : String(err);
    }
    const repeated = message === this.lastError;
    this.state = 'error';
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
    if (this.stopped) return;
    // A broken file produces one event per save; say it loudly once per distinct problem.
    const fields = err instanceof ValidationError ? { file: this.file, issues: err.issues } : { file: this.file };
    if (repeated) this.log.debug(fields, message);
    else
      this.log.error(
        fields,
        this.current ? `config file refused; still serving the last good configuration:\n${message}` : `config file refused:\n${message}`,
      );
  }
}
