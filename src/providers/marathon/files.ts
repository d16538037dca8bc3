/**
 * AppsDirProvider: Marathon app definitions kept in git (`config/apps/*.json`) as a feed, translated
 * exactly as the Marathon provider translates Marathon's own answers (translate.ts): the same services,
 * DNS names, VIP labels and marathon-lb labels.
 *
 * File format: each `*.json` file in the directory (dot-files ignored) holds
 *   - one app: `{"id": "/web", …}` — the body you would POST to /v2/apps, or
 *   - `{"apps": [ … ]}` — the answer of `GET /v2/apps?embed=apps.tasks`, so a dump of a running Marathon
 *     can be committed as is, or
 *   - `[ {app}, {app}, … ]`.
 * Where the tasks come from: nobody runs these apps for us, so their instances are written down in
 * Marathon's own task JSON — the shape `GET /v2/apps?embed=apps.tasks` and `GET /v2/tasks` return — as
 *   - an app's `tasks` array (what the embed gives), and/or
 *   - a top-level `tasks` array beside `apps` (`{"apps": […], "tasks": […]}`, e.g. a `/v2/tasks` dump),
 *     each task matched to its app by `appId`.
 * A task needs `host` (the agent's IP, or a host name that resolves) and `ports` (host ports, in port
 * order); for container networking, `ipAddresses: [{"ipAddress": …}]`. `state` defaults to running;
 * `healthCheckResults` and `draining` are honoured. A task of an app with health checks but without
 * results is served (`unknown`) and Portico's active checks — derived from the app's Marathon health
 * checks — decide, since no Marathon checks it. Service ports (`portDefinitions[].port`,
 * `portMappings[].servicePort`, `HAPROXY_{n}_PORT`) are bound only when given (> 0).
 *
 * A file that is not valid JSON or not apps is refused as a whole and reported with its path and
 * reason; its last good content (if any) and every other file keep serving. Two files defining one app
 * id: the first file (by name) wins, with a warning. The directory is watched (create, rename, delete;
 * editors that save atomically included) and reloads are debounced.
 */
import { readdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { contentHash } from '../../model/canonical.js';
import { silentLogger, type Logger } from '../../telemetry/log.js';
import { DirWatch } from '../dirwatch.js';
import type { Provider, ProviderState, ProviderStatus, SnapshotSink } from '../types.js';
import { lookupHost } from './provider.js';
import type { MarathonApp, MarathonTask } from './json.js';
import { normaliseAppId } from './names.js';
import { translateApps, type AppWarning, type MarathonFeedSettings, type MarathonTranslateOptions } from './translate.js';

export interface AppsDirProviderOptions extends MarathonFeedSettings {
  /** The directory of `*.json` app files. */
  dir: string;
  /** Provider name. Default `marathon-apps`. */
  name?: string;
  /** Default 90 (below the config file's 100, above the live Marathon's 50). */
  priority?: number;
  /** marathon-lb groups served; default `['*']` (the files are this instance's own). */
  groups?: string[];
  /** Quiet time after the last change before reading, ms. Default 25. */
  debounceMs?: number;
  logger?: Logger;
}

export const APPS_DIR_DEFAULTS = {
  name: 'marathon-apps',
  priority: 90,
  groups: ['*'] as readonly string[],
  debounceMs: 25,
  rearmMs: 1000,
} as const;

export interface AppFileError {
  file: string;
  error: string;
}

interface FileContent {
  apps: MarathonApp[];
}

export class AppsDirProvider implements Provider {
  readonly name: string;
  readonly priority: number;
  readonly dir: string;

  private readonly debounceMs: number;
  private readonly translateOpts: MarathonTranslateOptions;
  private readonly log: Logger;
  private readonly hosts = new Map<string, string | null>();
  private sink: SnapshotSink | undefined;
  private readonly watcher: DirWatch;
  private dirMissing = false;
  private queue: Promise<unknown> = Promise.resolve();
  private stopped = false;

  /** Last good content per file (absolute path). */
  private readonly good = new Map<string, FileContent>();
  private readonly errors = new Map<string, string>();
  private warningsList: AppWarning[] = [];
  private dirError: string | undefined;
  private sentHash: string | undefined;
  private state: ProviderState = 'starting';
  private lastUpdate: string | undefined;
  private lastErrorAt: string | undefined;
  private appCount = 0;
  private loggedProblems = new Set<string>();

  constructor(opts: AppsDirProviderOptions) {
    this.dir = resolve(opts.dir);
    this.name = opts.name ?? APPS_DIR_DEFAULTS.name;
    this.priority = opts.priority ?? APPS_DIR_DEFAULTS.priority;
    this.debounceMs = opts.debounceMs ?? APPS_DIR_DEFAULTS.debounceMs;
    this.translateOpts = {
      provider: this.name,
      groups: opts.groups ?? APPS_DIR_DEFAULTS.groups,
      missingHealth: 'unknown',
      resolveHost: (h) => this.hosts.get(h) ?? undefined,
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
    // A missing directory is the normal case (the feed is on by default): its watch retries silently.
    this.watcher = new DirWatch({
      dir: this.dir,
      matches: (name) => name.endsWith('.json'),
      onChange: () => void this.reload(),
      debounceMs: this.debounceMs,
      rearmMs: APPS_DIR_DEFAULTS.rearmMs,
    });
  }

  async start(sink: SnapshotSink): Promise<void> {
    if (this.sink) throw new Error(`apps provider ${this.name} is already started`);
    this.sink = sink;
    this.stopped = false;
    this.watcher.start();
    await this.reload();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.watcher.stop();
    await this.queue;
    this.state = 'stopped';
    this.sink = undefined;
  }

  /** Read the directory now. Resolves true when every file was good. Never rejects. */
  reload(): Promise<boolean> {
    const run = this.queue
      .then(() => this.load())
      .catch((err: unknown) => {
        this.dirError = `${this.dir}: ${(err as Error).message}`;
        this.setState();
        return false;
      });
    this.queue = run;
    return run;
  }

  status(): ProviderStatus {
    const errors: AppFileError[] = [...this.errors].map(([file, error]) => ({ file, error }));
    const status: ProviderStatus = {
      name: this.name,
      priority: this.priority,
      state: this.state,
      details: {
        dir: this.dir,
        exists: !this.dirMissing,
        files: new Set([...this.good.keys(), ...this.errors.keys()]).size,
        apps: this.appCount,
        errors,
        warnings: this.warningsList.slice(0, 1000),
        warningCount: this.warningsList.length,
      },
    };
    if (this.lastUpdate !== undefined) status.lastUpdate = this.lastUpdate;
    const lastError = this.lastError();
    if (lastError !== undefined) {
      status.lastError = lastError;
      if (this.lastErrorAt !== undefined) status.lastErrorAt = this.lastErrorAt;
    }
    return status;
  }

  // -------------------------------------------------------------------------------------------------

  private lastError(): string | undefined {
    const parts: string[] = [];
    if (this.dirError) parts.push(this.dirError);
    for (const [file, error] of this.errors)
      parts.push(`${file}: ${error}${this.good.has(file) ? ' (serving its last good content)' : ''}`);
    return parts.length > 0 ? parts.join('\n') : undefined;
  }

  private setState(): void {
    const err = this.lastError();
    if (err !== undefined) this.lastErrorAt = new Date().toISOString();
    if (this.dirError !== undefined && this.sentHash === undefined) this.state = 'error';
    else this.state = err !== undefined ? 'degraded' : 'ok';
    // Say each problem once.
    const now = new Set(err?.split('\n') ?? []);
    for (const p of now) if (!this.loggedProblems.has(p)) this.log.error(p);
    this.loggedProblems = now;
  }

  private async load(): Promise<boolean> {
    if (this.stopped) return false;
    let names: string[];
    try {
      names = (await readdir(this.dir, { withFileTypes: true }))
        .filter((d) => (d.isFile() || d.isSymbolicLink()) && d.name.endsWith('.json') && !d.name.startsWith('.'))
        .map((d) => d.name)
        .sort();
      this.dirError = undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // No directory is no apps: the feed is on by default (`<config dir>/apps`), so an absent directory
        // is the normal case, not an error. One that disappears takes its apps with it, as deleting every
        // file would. The watch re-arms until it appears.
        this.dirError = undefined;
        this.dirMissing = true;
        this.good.clear();
        this.errors.clear();
        const empty = { provider: this.name, services: {}, routes: [], entrypoints: {} };
        const hash = contentHash(empty);
        this.appCount = 0;
        this.warningsList = [];
        if (hash !== this.sentHash && this.send(empty)) {
          this.sentHash = hash;
          this.lastUpdate = new Date().toISOString();
        }
        this.setState();
        return false;
      }
      this.dirError = `apps directory ${this.dir}: ${(err as Error).message}${this.sentHash !== undefined ? ' (serving the last good apps meanwhile)' : ''}`;
      this.setState();
      return false;
    }
    this.dirMissing = false;
    const present = new Set(names.map((n) => join(this.dir, n)));
    for (const f of [...this.good.keys()]) if (!present.has(f)) this.good.delete(f);
    for (const f of [...this.errors.keys()]) if (!present.has(f)) this.errors.delete(f);

    for (const n of names) {
      const file = join(this.dir, n);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // gone between readdir and read
        this.errors.set(file, (err as Error).message);
        continue;
      }
      const parsed = parseAppsFile(text);
      if (typeof parsed === 'string') this.errors.set(file, parsed);
      else {
        this.good.set(file, parsed);
        this.errors.delete(file);
      }
    }
    if (this.stopped) return false;

    // Apps in file order; an id defined by two files: the first file wins.
    const owner = new Map<string, string>();
    const apps: MarathonApp[] = [];
    const extra: AppWarning[] = [];
    for (const n of names) {
      const file = join(this.dir, n);
      const c = this.good.get(file);
      if (!c) continue;
      for (const app of c.apps) {
        const id = normaliseAppId(app.id as string);
        const prior = owner.get(id);
        if (prior !== undefined) {
          if (prior !== file) extra.push({ app: id, message: `defined in ${prior} and again in ${file}; ${prior} is used` });
          else extra.push({ app: id, message: `defined more than once in ${file}; the first definition is used` });
          continue;
        }
        owner.set(id, file);
        apps.push(app);
      }
    }
    await this.resolveHosts(apps);
    const res = translateApps(apps, this.translateOpts);
    this.warningsList = [...res.warnings, ...extra];
    this.appCount = apps.length;
    const hash = contentHash(res.snapshot);
    if (hash !== this.sentHash) {
      if (this.send(res.snapshot)) {
        this.sentHash = hash;
        this.lastUpdate = new Date().toISOString();
        this.log.info(
          { dir: this.dir, files: names.length, apps: apps.length, services: res.stats.services, routes: res.stats.routes },
          'marathon app files loaded',
        );
        for (const w of this.warningsList.slice(0, 50)) this.log.warn({ app: w.app }, `app ${w.app}: ${w.message}`);
      }
    }
    this.setState();
    return this.errors.size === 0;
  }

  private send(snapshot: Parameters<SnapshotSink>[0]): boolean {
    try {
      this.sink?.(snapshot);
      return true;
    } catch (err) {
      this.log.error({ err }, 'snapshot sink failed');
      return false;
    }
  }

  /** Host names are looked up again on every reload (a name that did not resolve may resolve now). */
  private async resolveHosts(apps: MarathonApp[]): Promise<void> {
    const want = new Set<string>();
    for (const a of apps)
      for (const t of Array.isArray(a.tasks) ? a.tasks : []) {
        if (t && typeof t.host === 'string' && t.host !== '' && isIP(t.host) === 0) want.add(t.host);
      }
    const found = await Promise.all([...want].map(async (h) => [h, await lookupHost(h)] as const));
    this.hosts.clear();
    for (const [h, ip] of found) this.hosts.set(h, ip);
  }
}

/** A file's apps, with top-level tasks attached to their apps; or why the file is refused. */
export function parseAppsFile(text: string): FileContent | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return `not valid JSON: ${jsonErrorWhere(text, (err as Error).message)}`;
  }
  let list: unknown[];
  let topTasks: unknown[] = [];
  let where: string;
  if (Array.isArray(v)) {
    list = v;
    where = '';
  } else if (isObject(v) && Array.isArray(v.apps)) {
    list = v.apps;
    where = 'apps';
    if (v.tasks !== undefined) {
      if (!Array.isArray(v.tasks)) return '"tasks" must be an array of Marathon tasks';
      topTasks = v.tasks;
    }
  } else if (isObject(v) && 'id' in v) {
    list = [v];
    where = '';
  } else {
    return 'expected a Marathon app ({"id": …}), {"apps": […]}, or an array of apps';
  }
  const apps: MarathonApp[] = [];
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    const at = list.length === 1 && where === '' && !Array.isArray(v) ? '' : `${where}[${i}]: `;
    if (!isObject(a)) return `${at}an app must be an object`;
    if (typeof a.id !== 'string' || normaliseAppId(a.id) === '/') return `${at}"id" is missing or empty`;
    if (
      a.id.includes('//') ||
      !a.id
        .split('/')
        .filter((p) => p !== '')
        .every((p) => /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(p))
    )
      return `${at}"id" "${a.id}" is not a Marathon app id (path segments of a-z, 0-9, "-" and ".")`;
    if (a.tasks !== undefined && a.tasks !== null && !Array.isArray(a.tasks)) return `${at}"tasks" must be an array of Marathon tasks`;
    if (a.labels !== undefined && a.labels !== null && !isObject(a.labels)) return `${at}"labels" must be an object of strings`;
    apps.push({ ...(a as MarathonApp), tasks: Array.isArray(a.tasks) ? [...(a.tasks as MarathonTask[])] : [] });
  }
  if (topTasks.length > 0) {
    const byId = new Map(apps.map((a) => [normaliseAppId(a.id as string), a]));
    for (let i = 0; i < topTasks.length; i++) {
      const t = topTasks[i];
      if (!isObject(t) || typeof t.appId !== 'string') return `tasks[${i}]: a task needs "appId" to be matched to its app`;
      const app = byId.get(normaliseAppId(t.appId));
      if (!app) return `tasks[${i}]: appId "${t.appId}" is not an app of this file`;
      (app.tasks as MarathonTask[]).push(t as MarathonTask);
    }
  }
  return { apps };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `Unexpected token } in JSON at position 42` → adds `line 3, column 7`. */
function jsonErrorWhere(text: string, message: string): string {
  const m = /position (\d+)/.exec(message);
  if (!m) return message;
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  return `${message} (line ${line}, column ${column})`;
}
