export {
  MarathonProvider,
  MARATHON_PROVIDER_DEFAULTS,
  MARATHON_EVENT_TYPES,
  MarathonHttpError,
  appsOfDeployment,
  taskMatches,
} from './provider.js';
export type { MarathonProviderOptions } from './provider.js';
export { AppsDirProvider, APPS_DIR_DEFAULTS, parseAppsFile } from './files.js';
export type { AppsDirProviderOptions, AppFileError } from './files.js';
export { SseParser, connectSse, redactUrl } from './sse.js';
export type { SseEvent, SseConnection, SseOptions } from './sse.js';
export { translateApps, translateApp, assemble, resolveOptions } from './translate.js';
export type { MarathonTranslateOptions, AppTranslation, AppWarning, TranslateResult } from './translate.js';
export { taskNameOf, serviceBaseOf, normaliseAppId } from './names.js';
export { MARATHON_LB } from './labels.js';
export type {
  MarathonApp,
  MarathonTask,
  MarathonHealthCheck,
  MarathonHealthResult,
  MarathonPortDefinition,
  MarathonPortMapping,
} from './json.js';
