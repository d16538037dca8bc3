export { FileProvider, FILE_PROVIDER_DEFAULTS, contentHash } from './provider.js';
export type { FileProviderOptions } from './provider.js';
