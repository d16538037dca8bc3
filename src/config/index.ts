/** The config file: schema, loader, typed config and its translation to a provider snapshot. */
export { DEFAULT_CONFIG, loadConfigFile, parseConfigText, readConfigText } from './load.js';
export type { ParseOptions } from './load.js';
export { configSchema } from './schema.js';
export type { JsonSchema } from './schema.js';
export { configToSnapshot } from './snapshot.js';
export { DEFAULTS } from './defaults.js';
export { formatPath } from './locate.js';
export type { PathSegment } from './locate.js';
export type {
  ApiConfig,
  DnsConfig,
  EntrypointConfig,
  EntrypointTlsConfig,
  PorticoConfig,
  RouteConfig,
  ServiceConfig,
  VipsConfig,
} from './types.js';
