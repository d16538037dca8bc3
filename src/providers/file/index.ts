export { FileProvider, FILE_PROVIDER_DEFAULTS } from './provider.js';
export { contentHash } from '../../model/canonical.js';
export type { FileProviderOptions } from './provider.js';
