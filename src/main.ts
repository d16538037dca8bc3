/**
 * The composition root: read the config, open the store, wire feeds → aggregator → data planes, and
 * serve the admin api. Everything here is wiring; behaviour lives in the parts.
 *
 *   file provider ─┐
 *   (later: marathon, consul, store feeds)
 *                  ├─▶ aggregator ─▶ PLANES (src/planes.ts) ─▶ l7, l4, dns …
 *                  └─▶ api (table, versions, diff, providers, planes, metrics)
 */
import { randomBytes } from 'node:crypto';
import { mkdir, chmod, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Aggregator } from './aggregator/index.js';
import { ApiServer } from './api/server.js';
import { ensureToken } from './api/token.js';
import { configToSnapshot, loadConfigFile, type PorticoConfig } from './config/index.js';
import { DEFAULTS } from './config/defaults.js';
import { PorticoError, ErrorCodes, ValidationError } from './model/errors.js';
import { parseListen } from './model/parse.js';
import type { DataPlane } from './model/plane.js';
import { openOverlay, registerOverlayApi, type Overlay } from './overlay/index.js';
import { VipAllocator } from './vips/index.js';
import type { RoutingTable } from './model/types.js';
import { openPki, registerPkiApi, type Pki } from './pki/index.js';
import { PLANES, type PlaneContext } from './planes.js';
import { ConsulProvider } from './providers/consul/index.js';
import { FileProvider } from './providers/file/index.js';
import { AppsDirProvider, MarathonProvider } from './providers/marathon/index.js';
import { OverlayProvider } from './providers/overlay/index.js';
import { registerSharedConfigApi } from './providers/store/api.js';
import { SHARED_CONFIG_KEY, SharedConfigProvider } from './providers/store/shared.js';
import { registerInstancesApi } from './instances/api.js';
import { InstanceRegistry } from './instances/instances.js';
import type { Provider } from './providers/types.js';
import { openStore } from './store/index.js';
import type { Store } from './store/types.js';
import { createLogger, type Logger } from './telemetry/log.js';
import { createRegistry, type Registry } from './telemetry/metrics.js';

export interface UpOptions {
  /** Config file path. */
  configPath: string;
  /** Overrides of the file's static settings (CLI flags). */
  store?: string;
  data?: string;
  apiListen?: string;
  logger?: Logger;
  /** Drain timeout on stop, ms. Default 10 000. */
  drainMs?: number;
  /** Instance record lease TTL, ms (tests shorten it). Default 15 000. */
  instanceTtlMs?: number;
}

export interface Appliance {
  config: PorticoConfig;
  aggregator: Aggregator;
  api: ApiServer;
  apiAddress: { host: string; port: number };
  store: Store;
  /** This instance's id in the cluster view (`<data>/instance-id`). */
  instanceId: string;
  providers: Provider[];
  planes: DataPlane[];
  logger: Logger;
  registry: Registry;
  dataDir: string;
  tokenFile: string;
  /** Re-read the config file (what SIGHUP does). */
  reload(): Promise<boolean>;
  /** Graceful stop: api and planes stop accepting, planes drain, providers and the store close. */
  stop(): Promise<void>;
}

/** Store key of the last config that was accepted: the appliance starts from it if the file is broken. */
export const LAST_GOOD_CONFIG_KEY = 'portico/config/last-good';
const FILE_PROVIDER_PRIORITY = 100;

export async function up(opts: UpOptions): Promise<Appliance> {
  const logger = opts.logger ?? createLogger();
  const log = logger.child({ component: 'main' });
  const configPath = path.resolve(opts.configPath);

  // 1. The config at start. A broken file does not stop us if a last good config is in the store;
  //    but we need the file's static part (data dir, store) to find the store, so those come from
  //    flags or defaults when the file cannot be read.
  let config: PorticoConfig | undefined;
  let startError: unknown;
  try {
    config = await loadConfigFile(configPath);
  } catch (err) {
    startError = err;
  }
  const dataDir = path.resolve(opts.data ?? config?.data ?? './data');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const storeSpec = opts.store ?? config?.store ?? 'embedded';
  const store = await openStore(storeSpec, dataDir, { logger });

  if (!config) {
    const last = await store.get(LAST_GOOD_CONFIG_KEY).catch(() => undefined);
    if (!last) {
      await store.close();
      throw startError;
    }
    config = JSON.parse(last.value.toString('utf8')) as PorticoConfig;
    log.error(
      { file: configPath, error: errorText(startError) },
      'config file refused at start; serving the last good config from the store until the file is fixed',
    );
  }
  const startConfig = config;

  // 2. Shared parts: metrics, the aggregator, the cluster CA (certificates and secrets live in the store).
  const registry = createRegistry();
  const apiListenText = opts.apiListen ?? startConfig.api.listen;
  const pki: Pki = await openPki({ store, dataDir, logger, apiBaseUrl: `http://${apiListenText.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}` });
  const aggregator = new Aggregator({ logger, registry });
  if (startError) aggregator.update('file', FILE_PROVIDER_PRIORITY, configToSnapshot(startConfig, 'file'));

  // 3. Feeds. (Later issues add the marathon, consul and store providers here.)
  const fileProvider = new FileProvider({
    path: configPath,
    logger,
    onConfig: (cfg) => {
      warnStaticChanges(log, startConfig, cfg);
      store
        .put(LAST_GOOD_CONFIG_KEY, JSON.stringify({ ...cfg, store: '(not recorded)' }))
        .catch((err) => log.warn({ err }, 'could not record the last good config in the store'));
    },
  });
  // The shared config pushed through any instance's api (PUT /v1/config/shared), from the store.
  const sharedProvider = new SharedConfigProvider({ store, logger });
  const providers: Provider[] = [fileProvider, sharedProvider];
  // Marathon app definitions kept in files (`<config dir>/apps/*.json`), and the live Marathon feed.
  providers.push(
    new AppsDirProvider({
      dir: path.resolve(path.dirname(configPath), startConfig.apps.dir),
      groups: startConfig.apps.groups,
      ...(startConfig.marathon && {
        framework: startConfig.marathon.framework,
        httpEntrypoint: startConfig.marathon.httpEntrypoint,
        httpsEntrypoint: startConfig.marathon.httpsEntrypoint,
        defaultBindAddress: startConfig.marathon.bindAddress,
        bindServicePorts: startConfig.marathon.bindServicePorts,
        strictMode: startConfig.marathon.strictMode,
      }),
      logger,
    }),
  );
  let marathon: MarathonProvider | undefined;
  if (startConfig.marathon) {
    const m = startConfig.marathon;
    marathon = new MarathonProvider({
      url: m.urls,
      groups: m.groups,
      framework: m.framework,
      httpEntrypoint: m.httpEntrypoint,
      httpsEntrypoint: m.httpsEntrypoint,
      defaultBindAddress: m.bindAddress,
      bindServicePorts: m.bindServicePorts,
      strictMode: m.strictMode,
      priority: m.priority,
      ...(m.username !== undefined && m.password !== undefined && { auth: { username: m.username, password: m.password } }),
      ...(m.token !== undefined && { token: m.token }),
      logger,
      registry,
    });
    providers.push(marathon);
  }
  // Container leases of every agent (portico-cni ADDs that name a service) become endpoints.
  if (startConfig.overlay.enabled) providers.push(new OverlayProvider({ store, logger }));
  if (startConfig.consul) {
    const c = startConfig.consul;
    const token = c.token ?? process.env.CONSUL_HTTP_TOKEN;
    providers.push(
      new ConsulProvider({
        url: c.url,
        ...(token !== undefined && { token }),
        ...(c.datacenter !== undefined && { datacenter: c.datacenter }),
        framework: c.framework,
        entrypoint: c.entrypoint,
        exposedByDefault: c.exposedByDefault,
        includeWarning: c.includeWarning,
        ignoreServices: c.ignoreServices,
        priority: c.priority,
        logger,
      }),
    );
  }
  const instanceId = await ensureInstanceId(dataDir);

  // 4. Admin api.
  const token = await ensureToken(dataDir);
  const planes: DataPlane[] = [];
  const api = new ApiServer({
    aggregator,
    providers: () => providers.map((p) => p.status()),
    planes: () => planes.map((p) => p.status()),
    registry,
    token,
    metricsPublic: startConfig.api.metricsPublic,
    logger,
    ready: () => readiness(aggregator, providers, planes, store),
    config: () => ({ file: configPath }),
  });

  // 5. Data planes, in registration order, each fed every new table.
  registerPkiApi((m, p, h, o) => api.route(m, p, h, o), pki);
  registerSharedConfigApi((m, p, h, o) => api.route(m, p, h, o), { store, aggregator, instanceId, configFile: configPath });
  registerInstancesApi((m, p, h, o) => api.route(m, p, h, o), { store, sharedKey: SHARED_CONFIG_KEY, self: instanceId });
  const overlay = await startOverlay(startConfig, store, dataDir, logger);
  if (overlay) registerOverlayApi((m, p, h, o) => api.route(m, p, h, o), overlay);
  const ctx: PlaneContext = {
    config: startConfig,
    logger,
    registry,
    store,
    dataDir,
    pki,
    addApiRoute: (method, routePath, handler, routeOpts) => api.route(method, routePath, handler, routeOpts),
  };
  for (const reg of PLANES) {
    const plane = reg.create(ctx);
    if (plane) planes.push(plane);
  }

  for (const p of providers) await p.start((snap) => aggregator.update(p.name, p.priority, snap));
  // Named VIPs get their stable addresses (recorded in the store) before any plane sees a table.
  const vips = new VipAllocator(store, { logger });
  const withVips = (t: RoutingTable): Promise<RoutingTable> =>
    vips.annotate(t).catch((err) => {
      log.error(
        { err: err instanceof Error ? err.message : String(err), version: t.version },
        'VIP addresses not allocated; named VIPs without one wait for the next table',
      );
      return t;
    });
  const table = await withVips(aggregator.flush());
  pki.auto.update(table);
  const started: DataPlane[] = [];
  try {
    for (const plane of planes) {
      await plane.start(table);
      started.push(plane);
    }
  } catch (err) {
    for (const plane of started.reverse()) await plane.stop(0).catch(() => undefined);
    for (const p of providers) await p.stop().catch(() => undefined);
    pki.close();
    aggregator.close();
    await store.close();
    throw err;
  }
  let applied = table.version;
  let appliedVips = JSON.stringify(table.vips);
  // Which revision of the shared config the planes serve: the revision the provider last handed on,
  // once a table built from that snapshot (same content hash in `sources`) is applied.
  let sharedSent = { hash: aggregator.inputHash(sharedProvider.name), revision: sharedProvider.revision };
  let sharedApplied = table.sources[sharedProvider.name] === sharedSent.hash ? sharedSent.revision : 0;
  let instances: InstanceRegistry | undefined; // eslint-disable-line prefer-const -- assigned below, read by closures above
  const applyAll = (t: RoutingTable) => {
    applied = t.version;
    appliedVips = JSON.stringify(t.vips);
    for (const plane of planes) plane.apply(t);
    pki.auto.update(t);
    if (t.sources[sharedProvider.name] === sharedSent.hash) sharedApplied = sharedSent.revision;
    void instances?.publish();
  };
  const stopRevisions = sharedProvider.onRevision((revision) => {
    sharedSent = { hash: aggregator.inputHash(sharedProvider.name), revision };
    // Same content as what is served (a re-push of the same text): no new table will come, so it is applied now.
    const cur = aggregator.current();
    if (cur.version === applied && cur.sources[sharedProvider.name] === sharedSent.hash) {
      sharedApplied = revision;
      void instances?.publish();
    }
  });
  const unsubscribe = aggregator.subscribe((raw) => {
    void withVips(raw).then((t) => {
      // annotate() is serialised, so tables arrive in order; a stopped appliance applies nothing.
      if (t.version <= applied || stopping) return;
      applyAll(t);
    });
  });
  // VIP addresses are also released (after their grace period) or taken over from other instances
  // between table changes: look again every minute and re-apply the same table if its VIPs moved.
  const vipTimer = setInterval(() => {
    void withVips(aggregator.current()).then((t) => {
      if (!stopping && t.version === applied && JSON.stringify(t.vips) !== appliedVips) applyAll(t);
    });
  }, 60_000);
  vipTimer.unref();

  const listenText = apiListenText;
  const listen = parseListen(listenText);
  if (!listen.ok) throw new PorticoError(ErrorCodes.CONFIG_INVALID, `api.listen: ${listen.error}`, 400);
  let apiAddress: { host: string; port: number };
  try {
    apiAddress = await api.listen({ host: listen.value.host, port: listen.value.port });
  } catch (err) {
    unsubscribe();
    for (const plane of [...planes].reverse()) await plane.stop(0).catch(() => undefined);
    for (const p of providers) await p.stop().catch(() => undefined);
    pki.close();
    aggregator.close();
    await store.close();
    throw new PorticoError(ErrorCodes.LISTEN_FAILED, `api cannot listen on ${listenText}: ${errorText(err)}`, 500, { cause: err });
  }
  const tokenFile = path.join(dataDir, 'api-token');
  instances = new InstanceRegistry({
    store,
    id: instanceId,
    logger,
    ...(opts.instanceTtlMs !== undefined && { ttlMs: opts.instanceTtlMs }),
    describe: () => {
      const r = readiness(aggregator, providers, planes, store);
      const cur = aggregator.get(applied) ?? aggregator.current();
      return {
        api: `http://${fmt(apiAddress)}`,
        table: { version: cur.version, hash: cur.hash },
        sharedRevision: sharedApplied,
        ready: r.ready,
        degraded: r.degraded,
        reasons: r.reasons,
        planes: planes.map((p) => ({ name: p.name, state: p.status().state })),
      };
    },
  });
  await instances.start();
  log.info(
    {
      api: `http://${fmt(apiAddress)}`,
      tokenFile,
      store: store.kind,
      config: configPath,
      version: aggregator.current().version,
      planes: planes.map((p) => p.name),
    },
    'portico is up',
  );

  let stopping: Promise<void> | undefined;
  const appliance: Appliance = {
    config: startConfig,
    aggregator,
    api,
    apiAddress,
    store,
    instanceId,
    providers,
    planes,
    logger,
    registry,
    dataDir,
    tokenFile,
    reload: async () => {
      void marathon?.resync();
      return fileProvider.reload();
    },
    stop: () => {
      stopping ??= (async () => {
        log.info('stopping: draining data planes');
        unsubscribe();
        stopRevisions();
        clearInterval(vipTimer);
        await instances?.stop();
        const drainMs = opts.drainMs ?? 10_000;
        await Promise.all(
          [...planes].reverse().map((p) => p.stop(drainMs).catch((err) => log.error({ err, plane: p.name }, 'plane stop failed'))),
        );
        for (const p of providers) await p.stop().catch((err) => log.error({ err, provider: p.name }, 'provider stop failed'));
        pki.close();
        await overlay?.close().catch((err) => log.error({ err }, 'overlay close failed'));
        await api.close();
        aggregator.close();
        await store.close();
        log.info('stopped');
      })();
      return stopping;
    },
  };
  return appliance;
}

/**
 * Overlay IPAM for portico-cni. Not needed to route traffic, so a failure to start it (a socket path
 * taken, no permission) is logged and the appliance runs without it.
 */
async function startOverlay(config: PorticoConfig, store: Store, dataDir: string, logger: Logger): Promise<Overlay | undefined> {
  const o = config.overlay;
  if (!o.enabled) return undefined;
  const log = logger.child({ component: 'overlay' });
  try {
    let agentId = o.agentId;
    if (!agentId) {
      const file = path.join(dataDir, 'agent-id');
      agentId = (await readFile(file, 'utf8').catch(() => '')).trim();
      if (!agentId) {
        agentId = `agent-${randomBytes(6).toString('hex')}`;
        await writeFile(file, `${agentId}\n`, { mode: 0o600 });
      }
    }
    const agentIp = o.agentIp ?? firstIPv4() ?? '127.0.0.1';
    const socketPath = path.resolve(dataDir, o.socket);
    const opts: Parameters<typeof openOverlay>[0] = { store, agentId, agentIp, socketPath, logger, programLinux: o.programLinux };
    // The default socket (portico-cni's default) may be out of reach (not root, another daemon on this
    // machine): then the data directory's. A socket the operator chose is that one or none.
    if (o.socket === DEFAULTS.overlay.socket) opts.fallbackSocketPath = path.resolve(dataDir, 'ipam.sock');
    if (o.networks) opts.networks = o.networks;
    if (o.vtep) opts.vtep = o.vtep;
    const overlay = await openOverlay(opts);
    log.info({ agentId, agentIp, socket: socketPath, programLinux: o.programLinux }, 'overlay IPAM serving');
    return overlay;
  } catch (err) {
    log.error(
      { err: err instanceof Error ? err.message : String(err) },
      'overlay IPAM not started; the rest of the appliance runs without it',
    );
    return undefined;
  }
}

function firstIPv4(): string | undefined {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

function readiness(
  aggregator: Aggregator,
  providers: Provider[],
  planes: DataPlane[],
  store: Store,
): { ready: boolean; degraded: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (aggregator.current().version === 0 && providers.every((p) => p.status().state !== 'ok')) reasons.push('no routing table yet');
  const health = store.health();
  if (!health.ok)
    reasons.push(
      `store ${health.target}: unreachable${health.since ? ` since ${health.since}` : ''}; serving the last table, writes refused`,
    );
  for (const p of providers) {
    const s = p.status();
    if (s.state === 'error' || s.state === 'degraded')
      reasons.push(`provider ${s.name}: ${s.state}${s.lastError ? `: ${s.lastError}` : ''}`);
  }
  for (const pl of planes) {
    const s = pl.status();
    if (s.state !== 'serving') reasons.push(`plane ${s.name}: ${s.state}${s.error ? `: ${s.error}` : ''}`);
  }
  // A refused config edit or a store outage is reported (degraded), but we still serve the last good
  // table: ready stays true as long as a table exists and every plane serves. Only "nothing to serve"
  // makes us unready, so an outage of the shared store does not take every instance out of rotation.
  const fatal = reasons.filter((r) => !r.startsWith('provider ') && !r.startsWith('store '));
  return { ready: fatal.length === 0, degraded: reasons.length > 0, reasons };
}

/** This instance's id among those sharing a store: `<hostname>-<random>`, kept in `<data>/instance-id`. */
async function ensureInstanceId(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'instance-id');
  let id = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (!id) {
    id = `${os
      .hostname()
      .replace(/[^A-Za-z0-9.-]/g, '-')
      .slice(0, 40)}-${randomBytes(4).toString('hex')}`;
    await writeFile(file, `${id}\n`, { mode: 0o600 });
  }
  return id;
}

const STATIC_KEYS = ['data', 'store', 'api'] as const;

function warnStaticChanges(log: Logger, started: PorticoConfig, next: PorticoConfig): void {
  const changed: string[] = STATIC_KEYS.filter((k) => JSON.stringify(started[k]) !== JSON.stringify(next[k]));
  if (started.dns.listen !== next.dns.listen) changed.push('dns.listen');
  if (started.vips.listen !== next.vips.listen) changed.push('vips.listen');
  if (changed.length) log.warn({ keys: changed }, 'config changes that take effect only after a restart');
}

function errorText(err: unknown): string {
  if (err instanceof ValidationError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

function fmt(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
