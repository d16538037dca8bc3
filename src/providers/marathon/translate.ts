/**
 * Marathon apps (the JSON of `GET /v2/apps?embed=apps.tasks`) → a provider Snapshot, the way DC/OS's
 * networking pieces read them. Pure: no I/O, no clock; host names are resolved by the caller
 * (`resolveHost`). Built for 10,000 apps: one pass per app, per-app results that a provider caches and
 * re-assembles when one app changes.
 *
 * What each app becomes
 * - One service per port (port index n), named `<task>-<n>` where `<task>` is the app's Mesos task name
 *   as Mesos-DNS writes it: Marathon names tasks `PathId.toHostname` (the path reversed, joined with `.`:
 *   `/grp/app` → `app.grp`), Mesos-DNS turns `.` into `-`. So `/grp/app` port 0 is service `app-grp-0`,
 *   and every endpoint carries `task: "app.grp"` → DNS `app-grp.marathon.mesos`, `_app-grp._tcp.marathon.mesos`.
 *   Framework `marathon` (option). Two app ids that sanitise to one name: the later one (by id) gets a
 *   `-<hash>` suffix and a warning.
 * - Endpoints, per task and port, as marathon-lb's get_task_ip_and_ports: networking mode from `networks`
 *   (Marathon ≥1.5) or the legacy `ipAddress` / `container.docker.network`;
 *     host             → agent address (task.host, resolved) : task.ports[n]
 *     container/bridge → agent address : task.ports[n] (the host port of portMappings[n])
 *     container        → task.ipAddresses[0] : portMappings[n].containerPort (0 = the host port), with
 *                        `network` = the container network's name (DNS `.containerip.`, overlay).
 *   `agentAddress` = the agent's IP, `taskId` = the Marathon task id.
 * - Task state: TASK_STAGING/STARTING/FINISHED/FAILED/KILLED/ERROR/DROPPED/GONE/GONE_BY_OPERATOR/UNKNOWN
 *   are left out (marathon-lb's EXCLUDED_TASK_STATES); TASK_LOST and TASK_UNREACHABLE are kept, as
 *   marathon-lb keeps them (the task may well still run); TASK_KILLING — and a task with `draining: true`
 *   — is kept at weight 0 / health `draining`: open connections finish, no new ones (marathon-lb drops it
 *   at once; HAProxy's `disabled` server is what zdd.py draining used).
 * - Health, when the app has Marathon health checks: a task is `healthy` when it has results and every
 *   result is `alive` (Marathon's own definition: all checks pass); `unhealthy` when one is not. With no
 *   result yet, the last verdict this task had (marathon-lb keeps an LRU of them: results vanish after a
 *   Marathon leader change) — else, with `missingHealth: 'exclude'` (the Marathon provider; marathon-lb
 *   `--health-check`) `unhealthy`, i.e. not served until Marathon says alive; with `'unknown'` (app files,
 *   where nobody runs Marathon's checks) `unknown`, served while Portico's own active checks decide.
 *   Without health checks: `unknown` (no verdict; served), as dcos-l4lb serves running tasks.
 * - VIP labels (dcos-net): a port label whose key starts with `VIP`/`vip` on `portDefinitions[n]`,
 *   `container.portMappings[n]` (or `container.docker.portMappings[n]`): `"/name:port"` → named VIP
 *   `toVipName(name)` (`/grp/app` → `grpapp`), `"ip:port"` → IP VIP; split at the last colon; the port's
 *   protocol (`tcp,udp` gives both).
 * - marathon-lb's `HAPROXY_*` labels on the ports this instance serves: routes, service ports, balance,
 *   active checks (labels.ts says which and how).
 *
 * Where the parts are: Marathon's JSON and the defensive readers (json.ts), app and task names
 * (names.ts), networking modes, ports and VIP labels (ports.ts), marathon-lb's labels and health checks
 * (labels.ts). This file translates one app with them and assembles apps into a snapshot.
 */
import { toFrameworkName } from '../../model/names.js';
import { parseAddress } from '../../model/parse.js';
import type { Endpoint, Entrypoint, HealthState, Service, Snapshot } from '../../model/types.js';
import {
  asArray,
  isObject,
  isPort,
  normaliseIp,
  stringRecord,
  type MarathonApp,
  type MarathonHealthCheck,
  type MarathonHealthResult,
  type MarathonTask,
} from './json.js';
import { activeCheck, balanceOf, healthCheckFor, lbPort, parseLabels, served, splitGroups, truthy } from './labels.js';
import { normaliseAppId, serviceBaseOf, shortHash, taskNameOf } from './names.js';
import { containerNetworkName, networkingMode, portSpecs, vipsOf, type NetMode, type PortSpec } from './ports.js';

// ---------------------------------------------------------------------------------------------------
// Options and results

/** The translation settings a Marathon feed (the api, or app files) takes from its configuration. */
export type MarathonFeedSettings = Pick<
  MarathonTranslateOptions,
  'framework' | 'httpEntrypoint' | 'httpsEntrypoint' | 'defaultBindAddress' | 'bindServicePorts' | 'strictMode' | 'activeHealthChecks'
>;

export interface MarathonTranslateOptions {
  /** Provider name: route ids start with it. */
  provider: string;
  /** marathon-lb groups this instance serves (`--group`); `*` serves every app, grouped or not. */
  groups: readonly string[];
  /** Mesos framework for DNS names. Default `marathon`. */
  framework?: string;
  /** Entrypoint for VHOST routes over http (marathon-lb's :80). Default `web`; null: none. */
  httpEntrypoint?: string | null;
  /** Entrypoint for VHOST routes over https (marathon-lb's :443). Default `websecure`; null: none. */
  httpsEntrypoint?: string | null;
  /** Address service ports bind to without `HAPROXY_{n}_BIND_ADDR`. Default 127.0.0.1 (marathon-lb: `*`). */
  defaultBindAddress?: string;
  /** Bind service ports (tcp: IP VIPs; http: entrypoints `marathon-<port>`). Default true. */
  bindServicePorts?: boolean;
  /** marathon-lb `--strict-mode`: a port is served only with `HAPROXY_{n}_ENABLED=true`. Default false. */
  strictMode?: boolean;
  /** Marathon health checks become active checks of the ports this instance serves. Default true. */
  activeHealthChecks?: boolean;
  /** A task of an app with health checks but no result yet: `exclude` (default) or `unknown`. */
  missingHealth?: 'exclude' | 'unknown';
  /** Host name → IP for agents named by host name; undefined: not resolved (the task is left out). */
  resolveHost?: (host: string) => string | undefined;
  /** Last health verdict per task id, used when a task's results are missing. */
  previousHealth?: ReadonlyMap<string, boolean>;
}

export interface AppWarning {
  app: string;
  message: string;
}

type LocalService = Omit<Service, 'id' | 'provider'>;
type SnapshotRoute = Snapshot['routes'][number];

/** One app, translated: what a provider caches per app and assembles into a snapshot. */
export interface AppTranslation {
  /** App id (`/grp/app`), or `?<n>` for an app without a usable id. */
  id: string;
  services: Array<{ name: string; service: LocalService }>;
  /** Routes with marathon-lb's BACKEND_WEIGHT; `service` is the local name above. */
  routes: Array<{ weight: number; route: SnapshotRoute }>;
  entrypoints: Entrypoint[];
  warnings: string[];
  /** Health verdicts seen in this app's results (task id → alive), to remember for later. */
  verdicts: Array<[string, boolean]>;
  tasks: number;
}

export interface TranslateResult {
  snapshot: Snapshot;
  warnings: AppWarning[];
  stats: { apps: number; tasks: number; services: number; endpoints: number; routes: number };
}

/** marathon-lb's EXCLUDED_TASK_STATES, less TASK_KILLING (kept, draining). */
const EXCLUDED_STATES = new Set([
  'TASK_STAGING',
  'TASK_STARTING',
  'TASK_FINISHED',
  'TASK_FAILED',
  'TASK_KILLED',
  'TASK_ERROR',
  'TASK_DROPPED',
  'TASK_GONE',
  'TASK_GONE_BY_OPERATOR',
  'TASK_UNKNOWN',
]);

interface TaskView {
  id: string;
  /** Agent IP, when known. */
  agent: string | undefined;
  /** Container IP (container mode). */
  containerIp: string | undefined;
  ports: number[];
  health: HealthState;
  weight: number;
}

interface Resolved {
  provider: string;
  groups: ReadonlySet<string>;
  allGroups: boolean;
  framework: string;
  httpEntrypoint: string | null;
  httpsEntrypoint: string | null;
  defaultBindAddress: string;
  bindServicePorts: boolean;
  strictMode: boolean;
  activeHealthChecks: boolean;
  missingHealth: 'exclude' | 'unknown';
  resolveHost: ((host: string) => string | undefined) | undefined;
  previousHealth: ReadonlyMap<string, boolean> | undefined;
  /** host text → normalised IP (or null), memoised across apps. */
  hostMemo: Map<string, string | null>;
}

/** Build the shared, resolved form of the options once per translation run. */
export function resolveOptions(opts: MarathonTranslateOptions): Resolved {
  const groups = new Set(opts.groups.map((g) => g.trim()).filter((g) => g !== ''));
  const bind = parseAddress(opts.defaultBindAddress ?? '127.0.0.1');
  return {
    provider: opts.provider,
    groups,
    allGroups: groups.has('*'),
    framework: toFrameworkName(opts.framework ?? 'marathon') || 'marathon',
    httpEntrypoint: opts.httpEntrypoint === undefined ? 'web' : opts.httpEntrypoint || null,
    httpsEntrypoint: opts.httpsEntrypoint === undefined ? 'websecure' : opts.httpsEntrypoint || null,
    defaultBindAddress: bind.ok ? bind.value : '127.0.0.1',
    bindServicePorts: opts.bindServicePorts ?? true,
    strictMode: opts.strictMode ?? false,
    activeHealthChecks: opts.activeHealthChecks ?? true,
    missingHealth: opts.missingHealth ?? 'exclude',
    resolveHost: opts.resolveHost,
    previousHealth: opts.previousHealth,
    hostMemo: new Map(),
  };
}

export type ResolvedTranslateOptions = Resolved;

// ---------------------------------------------------------------------------------------------------
// One app

/** Translate one app. Never throws: anything unusable becomes a warning. */
export function translateApp(raw: unknown, r: Resolved, ordinal = 0): AppTranslation {
  const empty = (id: string, warning: string): AppTranslation => ({
    id,
    services: [],
    routes: [],
    entrypoints: [],
    warnings: [warning],
    verdicts: [],
    tasks: 0,
  });
  if (!isObject(raw)) return empty(`?${ordinal}`, 'not an app object; skipped');
  const app = raw as MarathonApp;
  if (typeof app.id !== 'string' || normaliseAppId(app.id) === '/') return empty(`?${ordinal}`, 'app without an "id"; skipped');
  const id = normaliseAppId(app.id);
  const out: AppTranslation = { id, services: [], routes: [], entrypoints: [], warnings: [], verdicts: [], tasks: 0 };
  try {
    translateInto(app, id, r, out);
  } catch (err) {
    // A shape nobody foresaw: this app is skipped, the others are not.
    return empty(id, `could not be translated (${(err as Error).message}); skipped`);
  }
  return out;
}

function translateInto(app: MarathonApp, id: string, r: Resolved, out: AppTranslation): void {
  const labels = stringRecord(app.labels);
  const mode = networkingMode(app);
  const specs = portSpecs(app, mode);
  const taskName = taskNameOf(id);
  const base = serviceBaseOf(id);
  const parsed = parseLabels(labels);
  const checks = asArray<MarathonHealthCheck>(app.healthChecks).filter(isObject);
  const network = mode === 'container' ? containerNetworkName(app) : undefined;

  // Tasks, once (their health and addresses do not depend on the port).
  const tasks = taskViews(app, mode, checks.length > 0, r, out);
  out.tasks = tasks.length;

  let anyServed = false;
  for (const [n] of parsed.ports) {
    if (n >= specs.length)
      out.warnings.push(
        `marathon-lb labels for port index ${n} (HAPROXY_${n}_*), but the app has ${specs.length} port${specs.length === 1 ? '' : 's'}; ignored`,
      );
  }

  for (const spec of specs) {
    const i = spec.index;
    const pl = parsed.ports.get(i) ?? {};
    const name = `${base}-${i}`;
    const hc = healthCheckFor(checks, i);

    // Endpoints.
    const endpoints: Endpoint[] = [];
    for (const t of tasks) {
      let address: string | undefined;
      let port: number | undefined;
      if (mode === 'container') {
        address = t.containerIp;
        port =
          spec.containerPort && spec.containerPort > 0
            ? spec.containerPort
            : spec.hostPortIndex >= 0
              ? t.ports[spec.hostPortIndex]
              : undefined;
      } else {
        address = t.agent;
        port = spec.hostPortIndex >= 0 ? t.ports[spec.hostPortIndex] : undefined;
      }
      if (address === undefined || !isPort(port)) continue;
      // The model's key order (address … network, labels): the aggregator hashes endpoints with plain
      // JSON.stringify, so equal endpoints must serialise equally.
      const e = { address, port, weight: t.weight, health: t.health, task: taskName } as Endpoint;
      if (t.id !== '') e.taskId = t.id;
      if (t.agent !== undefined) e.agentAddress = t.agent;
      if (network !== undefined) e.network = network;
      e.labels = {};
      endpoints.push(e);
    }
    endpoints.sort(compareEndpoints);

    const vips = vipsOf(spec, out.warnings);

    // marathon-lb: is this port served by this instance?
    const groups = pl.group !== undefined ? splitGroups(pl.group) : parsed.groups;
    let enabled = !r.strictMode;
    if (pl.enabled !== undefined) enabled = truthy(pl.enabled);
    const isServed = enabled && served(groups, r);
    const hasLbLabels = Object.keys(pl).length > 0;
    if (!isServed && hasLbLabels && groups.length === 0 && enabled && !r.allGroups) {
      out.warnings.push(
        `port ${i}: has marathon-lb labels but no HAPROXY_GROUP; this instance serves groups [${[...r.groups].join(', ')}], so the port is not load-balanced here`,
      );
    }

    const service: LocalService = {
      name,
      framework: r.framework,
      endpoints,
      balance: { algorithm: 'roundrobin' },
      vips,
      labels: serviceLabels(id, i, spec),
    };

    if (isServed) {
      anyServed = true;
      service.balance = balanceOf(pl, i, out.warnings);
      if (hc && r.activeHealthChecks) {
        const a = activeCheck(hc.check);
        if (typeof a === 'string') out.warnings.push(`port ${i}: ${a}`);
        else service.health = a;
      }
      lbPort(name, spec, pl, hc?.check, r, service, out);
    }
    out.services.push({ name, service });
  }

  if (anyServed || parsed.unknown.length > 0) {
    const unsupported = parsed.unsupported.filter((k) => {
      const m = /^HAPROXY_(\d+)_/.exec(k);
      return !m || Number(m[1]) < specs.length;
    });
    if (anyServed && unsupported.length > 0)
      out.warnings.push(`marathon-lb labels Portico does not support (ignored): ${unsupported.sort().join(', ')}`);
    if (parsed.unknown.length > 0)
      out.warnings.push(`labels that are not marathon-lb's (typo?; ignored): ${parsed.unknown.sort().join(', ')}`);
  }
}

function serviceLabels(id: string, i: number, spec: PortSpec): Record<string, string> {
  const l: Record<string, string> = { 'marathon.app': id, 'marathon.port-index': String(i) };
  if (spec.name !== undefined) l['marathon.port-name'] = spec.name;
  return l;
}

function taskViews(app: MarathonApp, mode: NetMode, hasChecks: boolean, r: Resolved, out: AppTranslation): TaskView[] {
  const views: TaskView[] = [];
  let unresolved: string | undefined;
  let noIp = 0;
  for (const t of asArray<MarathonTask>(app.tasks)) {
    if (!isObject(t)) continue;
    const state = typeof t.state === 'string' ? t.state : undefined;
    if (state !== undefined && EXCLUDED_STATES.has(state)) continue;
    const id = typeof t.id === 'string' ? t.id : '';
    const host = typeof t.host === 'string' ? t.host : '';
    if (host === '' && mode !== 'container') continue;
    const agent = host === '' ? undefined : resolveAgent(host, r);
    if (agent === undefined && host !== '' && mode !== 'container') {
      unresolved ??= host;
      continue;
    }
    let containerIp: string | undefined;
    if (mode === 'container') {
      for (const a of asArray<{ ipAddress?: string }>(t.ipAddresses)) {
        if (isObject(a) && typeof a.ipAddress === 'string') {
          containerIp = normaliseIp(a.ipAddress);
          if (containerIp !== undefined) break;
        }
      }
      if (containerIp === undefined) {
        noIp++;
        continue;
      }
    }

    let health: HealthState = 'unknown';
    if (hasChecks) {
      const results = asArray<MarathonHealthResult>(t.healthCheckResults);
      if (results.length > 0) {
        let alive = true;
        for (const res of results) if (!isObject(res) || res.alive !== true) alive = false;
        health = alive ? 'healthy' : 'unhealthy';
        if (id !== '') out.verdicts.push([id, alive]);
      } else {
        const prev = id !== '' ? r.previousHealth?.get(id) : undefined;
        if (prev !== undefined) health = prev ? 'healthy' : 'unhealthy';
        else health = r.missingHealth === 'exclude' ? 'unhealthy' : 'unknown';
      }
    }
    let weight = 1;
    if (state === 'TASK_KILLING' || t.draining === true) {
      weight = 0;
      if (health !== 'unhealthy') health = 'draining';
    }
    views.push({ id, agent, containerIp, ports: asArray<number>(t.ports), health, weight });
  }
  if (unresolved !== undefined) out.warnings.push(`tasks on agent "${unresolved}" left out: the host name does not resolve (yet)`);
  if (noIp > 0) out.warnings.push(`${noIp} task${noIp === 1 ? '' : 's'} without a container IP yet left out`);
  return views;
}

function resolveAgent(host: string, r: Resolved): string | undefined {
  const hit = r.hostMemo.get(host);
  if (hit !== undefined) return hit ?? undefined;
  let ip: string | undefined = normaliseIp(host);
  if (ip === undefined && r.resolveHost) {
    const res = r.resolveHost(host);
    ip = res === undefined ? undefined : normaliseIp(res);
  }
  r.hostMemo.set(host, ip ?? null);
  return ip;
}

function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}

// ---------------------------------------------------------------------------------------------------
// Assembly

/**
 * Put translated apps together into one snapshot: service-name collisions are resolved (the app with
 * the smaller id keeps the name), routes are ordered by BACKEND_WEIGHT (heaviest first, then app id),
 * an entrypoint claimed twice keeps its first claimant.
 */
export function assemble(provider: string, pieces: Iterable<AppTranslation>): TranslateResult {
  const sorted = [...pieces].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const services: Snapshot['services'] = {};
  const owner = new Map<string, string>();
  const entrypoints: Record<string, Entrypoint> = {};
  const weighted: Array<{ weight: number; order: number; route: SnapshotRoute }> = [];
  const warnings: AppWarning[] = [];
  let tasks = 0;
  let endpoints = 0;

  for (const p of sorted) {
    tasks += p.tasks;
    for (const message of p.warnings) warnings.push({ app: p.id, message });
    let renames: Map<string, string> | undefined;
    for (const { name, service } of p.services) {
      let final = name;
      const prior = owner.get(name);
      if (prior !== undefined && prior !== p.id) {
        final = `${name}-${shortHash(p.id)}`;
        (renames ??= new Map()).set(name, final);
        warnings.push({
          app: p.id,
          message: `service name ${name} is already ${prior}'s (both ids give that Mesos-DNS name); this app's service is ${final}`,
        });
      }
      owner.set(final, p.id);
      services[final] = final === name ? service : { ...service, name: final };
      endpoints += service.endpoints.length;
    }
    for (const ep of p.entrypoints) {
      if (entrypoints[ep.name]) {
        warnings.push({ app: p.id, message: `service port ${ep.listen} is already bound by another app; not bound again` });
        continue;
      }
      entrypoints[ep.name] = ep;
    }
    for (const { weight, route } of p.routes) {
      const svc = renames?.get(route.service);
      weighted.push({
        weight,
        order: weighted.length,
        route: svc === undefined ? route : { ...route, service: svc, id: route.id?.replace(`/${route.service}/`, `/${svc}/`) },
      });
    }
  }
  // Stable: by weight (descending), then the order apps were assembled in.
  let anyWeight = false;
  for (const x of weighted)
    if (x.weight !== 0) {
      anyWeight = true;
      break;
    }
  if (anyWeight) weighted.sort((a, b) => b.weight - a.weight || a.order - b.order);
  const routes = weighted.map((x) => x.route);
  const snapshot: Snapshot = { provider, services, routes, entrypoints };
  if (warnings.length) snapshot.warnings = warnings.map((w) => ({ subject: w.app, message: w.message }));
  return {
    snapshot,
    warnings,
    stats: { apps: sorted.length, tasks, services: Object.keys(services).length, endpoints, routes: routes.length },
  };
}

/** Translate a whole `/v2/apps` answer (its `apps` array) in one go. */
export function translateApps(
  apps: readonly unknown[],
  opts: MarathonTranslateOptions,
): TranslateResult & { verdicts: Map<string, boolean> } {
  const r = resolveOptions(opts);
  const pieces: AppTranslation[] = [];
  const verdicts = new Map<string, boolean>();
  for (let i = 0; i < apps.length; i++) {
    const p = translateApp(apps[i], r, i);
    pieces.push(p);
    for (const [k, v] of p.verdicts) verdicts.set(k, v);
  }
  // Two entries with one id (a hand-made file): the first wins.
  const seen = new Set<string>();
  const unique: AppTranslation[] = [];
  const dupWarnings: AppWarning[] = [];
  for (const p of pieces) {
    if (seen.has(p.id)) {
      dupWarnings.push({ app: p.id, message: 'defined more than once; the first definition is used' });
      continue;
    }
    seen.add(p.id);
    unique.push(p);
  }
  const res = assemble(opts.provider, unique);
  res.warnings.push(...dupWarnings);
  return { ...res, verdicts };
}
