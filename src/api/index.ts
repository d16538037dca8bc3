/** The admin REST api: `ApiServer`, its token, and the seam (RouteRegistrar) every area registers its resources through. */
export { ApiServer, UNMATCHED_ROUTE } from './server.js';
export { ensureToken, checkBearer, TOKEN_FILE } from './token.js';
export { Reply, ApiError, badRequest, notFound, intParam, mediaType, DEFAULT_BODY_LIMIT, JSON_TYPE } from './router.js';
export { defaultReadiness, FILE_PROVIDER, FILE_PRIORITY, CONFIG_MEDIA_TYPES } from './resources.js';
export { schemaRef } from './openapi.js';
export type * from './types.js';
