/**
 * The L4 data plane: TCP and UDP VIPs (Maglev, least-connections, round-robin), active and passive health,
 * draining, PROXY protocol both ways, SNI passthrough. `createL4Plane` is what `src/planes.ts` registers;
 * `registerL4Api` adds `GET /v1/vips`.
 */
export { createL4Plane, L4Plane, BALANCE_LABEL, balanceFor, localAddresses } from './plane.js';
export type { L4PlaneOptions } from './plane.js';
export type { L4Description, L4VipView, L4SniView, L4EndpointView, VipBinding } from './describe.js';
export { registerL4Api } from './api.js';
export { L4_DEFAULTS, resolveL4Options } from './options.js';
export type { L4Options, L4Balance, L4HashKey, L4Failure, L4HealthDefaults } from './options.js';
export { MaglevTable, fnv1a } from './maglev.js';
export { available as uvEngineAvailable } from '../net/uv.js';
export { parseClientHello, type HelloParse } from './sni.js';
export { encodeV1, encodeV2, parseProxyHeader, type ProxyParse } from './proxy-protocol.js';
