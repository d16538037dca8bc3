/**
 * What `up()` needs before any part exists: the config at start and the store it names, the data
 * directory, this instance's id, and the overlay IPAM (optional, so its failure is not a start failure).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseConfigText, readConfigText, type PorticoConfig } from './config/index.js';
import { DEFAULTS } from './config/defaults.js';
import type { Lifecycle } from './lifecycle.js';
import { ValidationError } from './model/errors.js';
import { openOverlay, type Overlay } from './overlay/index.js';
import { openStore } from './store/index.js';
import type { Store } from './store/types.js';
import type { Logger } from './telemetry/log.js';

/** Store key of the last config that was accepted: the appliance starts from it if the file is broken. */
export const LAST_GOOD_CONFIG_KEY = 'portico/config/last-good';

export interface Boot {
  config: PorticoConfig;
  /** Absolute path of the config file. */
  configPath: string;
  /** Absolute data directory, created 0700. */
  dataDir: string;
  store: Store;
  /** The file was refused at start and `config` is the last good one from the store. */
  refused: boolean;
  /**
   * The file's text `config` was parsed from (absent when it was refused): the file provider's first load
   * takes `config` instead of parsing the file again when it still says the same.
   */
  configText?: string;
}

/**
 * The config at start, and the store. A broken file does not stop a start if the store holds a last good
 * config; but the file's static part (data dir, store) is what finds the store, so those come from the
 * flags or the defaults when the file cannot be read. The store's closer is on `life`.
 */
export async function openConfigAndStore(
  opts: { configPath: string; store?: string; data?: string },
  life: Lifecycle,
  logger: Logger,
): Promise<Boot> {
  const log = logger.child({ component: 'main' });
  const configPath = path.resolve(opts.configPath);
  let config: PorticoConfig | undefined;
  let configText: string | undefined;
  let startError: unknown;
  try {
    const text = await readConfigText(configPath);
    config = parseConfigText(text, { file: configPath });
    configText = text;
  } catch (err) {
    startError = err;
  }
  const dataDir = path.resolve(opts.data ?? config?.data ?? DEFAULTS.data);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const spec = opts.store ?? config?.store ?? DEFAULTS.store;
  const store = life.add('store', await openStore(spec, dataDir, { logger }), (s) => s.close());
  if (config) return { config, configPath, dataDir, store, refused: false, ...(configText !== undefined && { configText }) };

  const last = await store.get(LAST_GOOD_CONFIG_KEY).catch(() => undefined);
  if (!last) throw startError;
  log.error(
    { file: configPath, error: errorText(startError) },
    'config file refused at start; serving the last good config from the store until the file is fixed',
  );
  return { config: JSON.parse(last.value.toString('utf8')) as PorticoConfig, configPath, dataDir, store, refused: true };
}

/**
 * The sections a running appliance applies when the file changes: they become the file feed's snapshot.
 * Every other section is read once, by the part created from it at start (the store, the api, the planes'
 * engine settings, the feeds, the overlay).
 */
const LIVE_SECTIONS: ReadonlySet<string> = new Set(['entrypoints', 'services', 'routes']);

/** The top-level sections of `next` that differ from `started` and that only a restart applies. */
export function restartOnlyChanges(started: PorticoConfig, next: PorticoConfig): string[] {
  const keys = new Set([...Object.keys(started), ...Object.keys(next)]);
  return [...keys]
    .filter((k) => !LIVE_SECTIONS.has(k))
    .filter((k) => JSON.stringify((started as Record<string, unknown>)[k]) !== JSON.stringify((next as Record<string, unknown>)[k]))
    .sort();
}

/** Record an accepted config as the last good one, and warn about keys that only a restart applies. */
export function recordAccepted(store: Store, started: PorticoConfig, next: PorticoConfig, log: Logger): void {
  const changed = restartOnlyChanges(started, next);
  if (changed.length) log.warn({ keys: changed }, 'config changes that take effect only after a restart');
  store
    .put(LAST_GOOD_CONFIG_KEY, JSON.stringify({ ...next, store: '(not recorded)' }))
    .catch((err) => log.warn({ err }, 'could not record the last good config in the store'));
}

/** This instance's id among those sharing a store: `<hostname>-<random>`, kept in `<data>/instance-id`. */
export async function ensureInstanceId(dataDir: string): Promise<string> {
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

/**
 * Overlay IPAM for portico-cni. Not needed to route traffic, so a failure to start it (a socket path
 * taken, no permission) is logged and the appliance runs without it.
 */
export async function startOverlay(config: PorticoConfig, store: Store, dataDir: string, logger: Logger): Promise<Overlay | undefined> {
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

function errorText(err: unknown): string {
  if (err instanceof ValidationError) return err.message;
  return err instanceof Error ? err.message : String(err);
}
