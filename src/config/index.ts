/** The config file: schema, loader, typed config and its translation to a provider snapshot. */
export { DEFAULT_CONFIG, loadConfigFile, parseConfigText, readConfigText, readConfigValue } from './load.js';
export type { ParseOptions } from './load.js';
export { configSchema, configSettings } from './schema.js';
export { referenceRows, renderConfigReference } from './reference.js';
export type { ReferenceRow } from './reference.js';
export type { JsonSchema } from './schema.js';
export { configToSnapshot } from './snapshot.js';
export { DEFAULTS } from './defaults.js';
export { formatPath } from './locate.js';
export type { PathSegment } from './locate.js';
export type {
  ApiConfig,
  AppsConfig,
  ConsulConfig,
  DnsConfig,
  DnsSectionConfig,
  EntrypointConfig,
  EntrypointTlsConfig,
  L4Config,
  L7Config,
  MarathonConfig,
  OverlayConfig,
  PorticoConfig,
  RouteConfig,
  ServiceConfig,
  VipsConfig,
} from './types.js';
