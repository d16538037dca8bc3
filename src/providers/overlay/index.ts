export { OverlayProvider, OVERLAY_PROVIDER_DEFAULTS, leasesToSnapshot } from './provider.js';
export type { OverlayProviderOptions } from './provider.js';
