/**
 * The composition root. `up()` is a list of steps; each part it starts pushes its closer onto one stack
 * (src/lifecycle.ts), which unwinds on a start error and on stop. Behaviour lives in the parts, and the
 * parts are registered in three lists, in the order tables flow:
 *
 *   src/providers/index.ts  feeds ─▶ aggregator ─▶ src/stages.ts (VIP addresses, certificates)
 *                                                   ─▶ served table ─▶ src/planes.ts (l7, l4, dns)
 *                                                                  └─▶ admin api (GET /v1/table …)
 *
 * What the planes serve is exactly what the api shows: both read the served table of the pipeline.
 */
import path from 'node:path';
import { Aggregator } from './aggregator/index.js';
import { TablePipeline } from './aggregator/pipeline.js';
import { ApiServer } from './api/server.js';
import { ensureToken } from './api/token.js';
import { ensureInstanceId, openConfigAndStore, recordAccepted, startOverlay } from './boot.js';
import { FILE_PRIORITY } from './api/resources.js';
import type { Readiness, RouteRegistrar, TableReader } from './api/types.js';
import { configToSnapshot, type PorticoConfig } from './config/index.js';
import type { PartContext } from './context.js';
import { registerInstancesApi } from './instances/api.js';
import { InstanceRegistry } from './instances/instances.js';
import { Lifecycle } from './lifecycle.js';
import { ErrorCodes, PorticoError } from './model/errors.js';
import { formatListen, parseListen } from './model/parse.js';
import type { DataPlane } from './model/plane.js';
import type { RoutingTable, Snapshot, SnapshotDelta, TableChange } from './model/types.js';
import { registerOverlayApi } from './overlay/index.js';
import { openPki, registerPkiApi } from './pki/index.js';
import { askPlane, encodeSessionKeys, PLANES, type PlaneContext, type PlaneRegistration } from './planes.js';
import { PROVIDERS, type ProviderRegistration } from './providers/index.js';
import { registerSharedConfigApi } from './providers/store/api.js';
import { SHARED_CONFIG_KEY, SharedConfigProvider, SharedRevisionTracker } from './providers/store/shared.js';
import type { Provider } from './providers/types.js';
import { readiness } from './readiness.js';
import { STAGES, type StageRegistration } from './stages.js';
import type { Store } from './store/types.js';
import { createLogger, type Logger } from './telemetry/log.js';
import { createRegistry, type Registry } from './telemetry/metrics.js';
import { StartClock } from './telemetry/startup.js';
import { WorkerPlanes, type SupervisorChannel } from './workers/host.js';

export { LAST_GOOD_CONFIG_KEY } from './boot.js';

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
  /** The registered parts (default: the three lists); tests add parts of their own. */
  providers?: ProviderRegistration[];
  stages?: StageRegistration[];
  planes?: PlaneRegistration[];
  /**
   * Run the data planes in worker processes (`workers` in the config) through this channel to the supervisor
   * (src/workers/supervisor.ts, what `portico up` is). Absent (a library call, a test): the planes run here.
   */
  supervisor?: SupervisorChannel;
}

export interface Appliance {
  config: PorticoConfig;
  aggregator: Aggregator;
  /** The served tables: what every plane applies and the api shows. */
  pipeline: TablePipeline;
  api: ApiServer;
  apiAddress: { host: string; port: number };
  store: Store;
  /** This instance's id among those sharing the store (`<data>/instance-id`). */
  instanceId: string;
  providers: Provider[];
  planes: DataPlane[];
  /** The data-plane workers, when the planes run in worker processes. */
  workers?: WorkerPlanes;
  logger: Logger;
  registry: Registry;
  dataDir: string;
  tokenFile: string;
  /** Read every re-readable source again (what SIGHUP does); true when all were accepted. */
  reload(): Promise<boolean>;
  /** Graceful stop: the instance record goes, planes drain, then everything else closes, newest first. */
  stop(): Promise<void>;
}

export async function up(opts: UpOptions): Promise<Appliance> {
  const logger = opts.logger ?? createLogger();
  const log = logger.child({ component: 'main' });
  const life = new Lifecycle(logger);
  const clock = new StartClock();
  clock.mark('modules');
  try {
    // 1. The config and the store it names (a refused file starts from the last good config in the store).
    const { config, configPath, dataDir, store, refused, configText } = await openConfigAndStore(opts, life, logger);
    clock.mark('config');
    const apiListen = opts.apiListen ?? config.api.listen;
    const listen = parseListen(apiListen);
    if (!listen.ok) throw new PorticoError(ErrorCodes.CONFIG_INVALID, `api.listen: ${listen.error}`, 400);
    const instanceId = await ensureInstanceId(dataDir);

    // 2. Shared parts: metrics, the cluster CA, the aggregator, the pipeline of served tables, the admin
    //    api (it listens last), and the context every registered part is created from.
    const registry = createRegistry();
    const apiBaseUrl = `http://${apiListen.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
    const pki = life.add('pki', await openPki({ store, dataDir, logger, apiBaseUrl }), (p) => p.close());
    const aggregator = life.add('aggregator', new Aggregator({ logger, registry }), (a) => a.close());
    const inWorkers = opts.supervisor !== undefined && config.workers > 0;
    const pipeline = life.add('pipeline', new TablePipeline({ aggregator, logger, registry, announce: !inWorkers }), (p) => p.close());
    // The data planes run in worker processes when the supervisor runs us (`workers` in the config);
    // they load their code while the rest starts. What the api calls served is what they all apply.
    const planeRegs = opts.planes ?? PLANES;
    const workers =
      opts.supervisor && inWorkers
        ? life.add(
            'workers',
            new WorkerPlanes({
              channel: opts.supervisor,
              count: config.workers,
              // The planes are created from the engine sections; the services and routes reach them as tables.
              init: { config: { ...config, services: {}, routes: [] }, logLevel: logger.level },
              planes: planeRegs.map((r) => r.name),
              logger,
              registry,
              spoolDir: path.join(dataDir, 'tables'),
            }),
            (w) => w.close(),
          )
        : undefined;
    if (workers) clock.mark('workers');
    const served = workers ? servedByWorkers(pipeline, workers) : pipeline;
    const providers: Provider[] = [];
    const planes: DataPlane[] = [];
    const ready = (): Required<Readiness> => readiness(served.current(), providers, planes, store);
    const metrics = workers && (() => workers.metrics(registry));
    const api = await adminApi({ config, configPath, dataDir, tables: served, providers, planes, registry, metrics, logger, ready });
    life.defer('api', () => api.close());
    const route: RouteRegistrar = (...args) => api.route(...args);
    // A config accepted before the appliance is up (the file's, at start) is recorded once it is: writing
    // megabytes to the store is not what serving the first table should wait for.
    const whenUp: Array<() => void> = [];
    let isUp = false;
    const configAccepted = (next: PorticoConfig): void => {
      if (isUp) recordAccepted(store, config, next, log);
      else whenUp.push(() => recordAccepted(store, config, next, log));
    };
    const ctx: PartContext = {
      ...{ config, configPath, dataDir, instanceId, logger, registry, store, pki, addApiRoute: route, configAccepted },
      ...(configText !== undefined && { configText }),
    };

    // 3. Table stages, in order (src/stages.ts). A refused file's last good config is the first input.
    for (const stage of created(opts.stages ?? STAGES, ctx)) pipeline.use(stage);
    if (refused) aggregator.update('file', FILE_PRIORITY, configToSnapshot(config, 'file'));

    // 4. Area resources, and the overlay IPAM (optional: the appliance runs without it).
    registerPkiApi(route, pki);
    registerSharedConfigApi(route, { store, tables: pipeline, instanceId, configFile: configPath });
    registerInstancesApi(route, { store, sharedKey: SHARED_CONFIG_KEY, self: instanceId });
    const overlay = await startOverlay(config, store, dataDir, logger);
    if (overlay) life.defer('overlay', () => overlay.close());
    if (overlay) registerOverlayApi(route, overlay);

    // 5. Feeds (src/providers/index.ts). Each start() resolves after its first snapshot or recorded failure.
    for (const p of created(opts.providers ?? PROVIDERS, ctx)) {
      life.defer(`provider ${p.name}`, () => p.stop());
      providers.push(p);
      await p.start(
        Object.assign((snapshot: Snapshot) => aggregator.update(p.name, p.priority, snapshot), {
          change: (delta: SnapshotDelta) => aggregator.change(p.name, p.priority, delta),
        }),
      );
      clock.mark(`feed.${p.name}`);
    }

    // 6. Data planes (src/planes.ts), here or in the workers, start on the first served table; a table served
    //    while they start is handed over right after (subscribe's `since`), so no change made during the
    //    start is lost. Their api resources answer from the plane wherever it runs.
    if (workers) {
      planes.push(...workers.planes);
      pki.auto.onChange((certs) => workers.setAutoCertificates(certs));
      pki.sessionKeys.onChange((keys) => workers.setSessionKeys(encodeSessionKeys(keys)));
      for (const reg of planeRegs) reg.api?.(route, (method, ...args) => workers.query(reg.name, method, args));
      route('GET', '/v1/workers', () => ({ count: config.workers, workers: workers.describe() }), {
        doc: {
          summary: 'The data-plane worker processes: pid, the table version each applies, live once it applied one',
          tags: ['planes'],
        },
      });
    } else {
      const planeCtx: PlaneContext = {
        config,
        logger,
        registry,
        keys: {
          onAutoCertificates: (cb) => pki.auto.onChange(cb),
          onSessionKeys: (cb) => pki.sessionKeys.onChange((keys) => cb(encodeSessionKeys(keys))),
        },
      };
      for (const reg of planeRegs) {
        const plane = reg.create(planeCtx);
        if (!plane) continue;
        planes.push(plane);
        reg.api?.(route, <T>(method: string, ...args: unknown[]) => askPlane(reg, plane, method, args) as Promise<T>);
      }
    }
    const first = await pipeline.flush();
    clock.mark('table');
    const started: DataPlane[] = [];
    life.defer('planes', () => Promise.all(started.reverse().map((p) => stopPlane(p, opts.drainMs ?? 10_000, log))));
    for (const plane of planes) await plane.start(first).then(() => started.push(plane));
    clock.mark('planes');
    const offPlanes = pipeline.subscribe((t, _previous, change) => applyAll(planes, t, change, log), first.version);
    life.defer('plane updates', offPlanes);

    // 7. The admin api listens; the instance record on the store says what this instance serves.
    const apiAddress = await api.listen(listen.value);
    await recordInstance(life, ctx, { ttlMs: opts.instanceTtlMs, apiAddress, aggregator, served, providers, planes, ready });

    const tokenFile = path.join(dataDir, 'api-token');
    const facts = { api: `http://${formatListen(apiAddress)}`, tokenFile, store: store.kind, config: configPath };
    const shape = workers ? { workers: config.workers } : { workers: 0 };
    clock.mark('up');
    log.info(
      { ...facts, ...shape, version: served.current().version, planes: planes.map((p) => p.name), ...clock.fields() },
      'portico is up',
    );
    isUp = true;
    for (const fn of whenUp.splice(0)) fn();
    return {
      ...{ config, aggregator, pipeline, api, apiAddress, store, instanceId, providers, planes, logger, registry, dataDir, tokenFile },
      ...(workers && { workers }),
      reload: async () => (await Promise.all(providers.map((p) => p.reload?.() ?? true))).every(Boolean),
      stop: async () => {
        if (!life.stopped) log.info('stopping: draining data planes');
        await life.stop();
        log.info('stopped');
      },
    };
  } catch (err) {
    await life.stop();
    throw err;
  }
}

/**
 * This instance's record on the store (a lease), published again whenever the served table or the
 * applied shared-config revision moves, so `GET /v1/instances` on any instance shows who serves what.
 */
async function recordInstance(
  life: Lifecycle,
  ctx: PartContext,
  d: {
    ttlMs: number | undefined;
    apiAddress: { host: string; port: number };
    aggregator: Aggregator;
    served: ServedTables;
    providers: Provider[];
    planes: DataPlane[];
    ready: () => Required<Readiness>;
  },
): Promise<void> {
  const shared = d.providers.find((p): p is SharedConfigProvider => p instanceof SharedConfigProvider);
  const revisions = shared && life.add('revisions', new SharedRevisionTracker(shared, d.aggregator, d.served), (r) => r.close());
  const instances = new InstanceRegistry({
    store: ctx.store,
    id: ctx.instanceId,
    logger: ctx.logger,
    ...(d.ttlMs !== undefined && { ttlMs: d.ttlMs }),
    describe: () => {
      const served = d.served.current();
      return {
        api: `http://${formatListen(d.apiAddress)}`,
        table: { version: served.version, hash: served.hash },
        sharedRevision: revisions?.applied ?? 0,
        ...d.ready(),
        planes: d.planes.map((p) => ({ name: p.name, state: p.status().state })),
      };
    },
  });
  life.defer('instance record', () => instances.stop());
  await instances.start();
  if (revisions)
    life.defer(
      'revision updates',
      revisions.onChange(() => void instances.publish()),
    );
  const off = d.served.subscribe((t) => {
    revisions?.served(t);
    void instances.publish();
  }, d.served.current().version);
  life.defer('instance updates', off);
}

/** The parts a registration list creates from `ctx`, in its order (a registration may create none). */
function created<T>(list: Array<{ create: (ctx: PartContext) => T | undefined }>, ctx: PartContext): T[] {
  return list.flatMap((reg) => reg.create(ctx) ?? []);
}

/** The admin api (not yet listening): the served tables, the feeds' and planes' status, readiness. */
async function adminApi(d: {
  config: PorticoConfig;
  configPath: string;
  dataDir: string;
  tables: ServedTables;
  providers: Provider[];
  planes: DataPlane[];
  registry: Registry;
  metrics: (() => Promise<{ contentType: string; text: string }>) | undefined;
  logger: Logger;
  ready: () => Readiness;
}): Promise<ApiServer> {
  return new ApiServer({
    tables: d.tables,
    ...(d.metrics && { metrics: d.metrics }),
    providers: () => d.providers.map((p) => p.status()),
    planes: () => d.planes.map((p) => p.status()),
    registry: d.registry,
    token: await ensureToken(d.dataDir),
    logger: d.logger,
    metricsPublic: d.config.api.metricsPublic,
    ready: d.ready,
    config: () => ({ file: d.configPath }),
  });
}

/** Hand a served table to every plane; one plane's failure (apply must not throw) does not skip the others. */
function applyAll(planes: DataPlane[], table: RoutingTable, change: TableChange | undefined, log: Logger): void {
  for (const plane of planes) {
    try {
      plane.apply(table, change);
    } catch (err) {
      log.error({ err, plane: plane.name, version: table.version }, 'plane apply threw; it keeps its previous table');
    }
  }
}

async function stopPlane(plane: DataPlane, drainMs: number, log: Logger): Promise<void> {
  await plane.stop(drainMs).catch((err) => log.error({ err, plane: plane.name }, 'plane stop failed'));
}

/** The served tables as the api, readiness and the instance record read them. */
type ServedTables = TableReader & Pick<TablePipeline, 'subscribe'>;

/**
 * With the planes in workers, "served" is what every worker applies: the newest such table, and its
 * listeners called when the workers reach a version. Versions, history and previews stay the pipeline's.
 */
function servedByWorkers(pipeline: TablePipeline, workers: WorkerPlanes): ServedTables {
  return {
    current: () => workers.served() ?? pipeline.current(),
    get: (v) => pipeline.get(v),
    versions: () => pipeline.versions(),
    diff: (from, to) => pipeline.diff(from, to),
    preview: (provider, priority, snapshot) => pipeline.preview(provider, priority, snapshot),
    subscribe: (fn, since) => {
      let last = since ?? -1;
      let previous = workers.served();
      return workers.onServed((t) => {
        if (t.version === last) return;
        last = t.version;
        const before = previous ?? t;
        previous = t;
        fn(t, before, undefined);
      });
    },
  };
}
