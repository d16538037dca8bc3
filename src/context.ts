/**
 * What every registered part (a provider in src/providers/index.ts, a table stage in src/stages.ts, a data
 * plane in src/planes.ts) is created from: the appliance's shared parts, handed over by the composition
 * root (src/main.ts). A part takes what it needs and nothing reaches back into main.
 */
import type { RouteRegistrar } from './api/types.js';
import type { PorticoConfig } from './config/index.js';
import type { Pki } from './pki/index.js';
import type { Store } from './store/types.js';
import type { Logger } from './telemetry/log.js';
import type { Registry } from './telemetry/metrics.js';

export interface PartContext {
  /** The config the appliance started with (later edits reach the parts as tables, not as config). */
  config: PorticoConfig;
  /**
   * The text of the config file `config` was parsed from at start (absent when the file was refused and
   * `config` is the store's last good one): the file provider's first load takes `config` when the file
   * still holds this text, rather than parsing the same megabytes twice.
   */
  configText?: string;
  /** Absolute path of the config file; relative paths in it resolve against its directory. */
  configPath: string;
  /** Absolute data directory (0700). */
  dataDir: string;
  /** This instance's id among those sharing the store (`<data>/instance-id`). */
  instanceId: string;
  logger: Logger;
  registry: Registry;
  store: Store;
  /** The cluster CA: certificates for `tls.auto`, secrets. */
  pki: Pki;
  /** Add an admin api resource under /v1/ (e.g. GET /v1/vips). */
  addApiRoute: RouteRegistrar;
  /** The file provider accepted a config (record it as the last good one, warn about restart-only keys). */
  configAccepted(config: PorticoConfig): void;
}
