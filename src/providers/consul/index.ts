export { ConsulProvider, CONSUL_PROVIDER_DEFAULTS, describeError } from './provider.js';
export type { ConsulProviderOptions } from './provider.js';
export { translateService, parseVip, normaliseKey } from './translate.js';
export type { ConsulHealthEntry, ConsulCatalogServices, TranslateOptions, TranslatedService, ServiceInput } from './translate.js';
