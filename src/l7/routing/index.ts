export { compileRouter, compileRouters, HOST_CACHE_SIZE } from './router.js';
export type { CompiledRouter, HeaderGetter, MatchWork, RouteMatch, ServiceRef } from './router.js';
export { normalizeHost, normalizeRouteHost } from './host.js';
export type { HostKey } from './host.js';
