/**
 * The L4 engine's options. Their type, defaults, units, checks and the config file's `l4:` keys are
 * defined once, in settings.ts; `resolveL4Options` fills defaults and checks a value given in code (a bad
 * value is a TypeError naming it); per-connection code only reads the frozen result.
 */
import type { L4Options } from './settings.js';

export { L4_DEFAULTS, resolveL4Options, type L4Options } from './settings.js';

/** Selection for services that choose none: `maglev`, `leastconn` or `roundrobin`. */
export type L4Balance = L4Options['balance'];

/**
 * What Maglev hashes to pick an endpoint for a new connection or UDP flow.
 * - `five-tuple`: client address and port, VIP address and port, protocol (the paper's choice: every
 *   connection lands anywhere, and instances behind ECMP agree on the endpoint of a given flow).
 * - `source-ip`: the client address only (affinity: one client sticks to one endpoint while the set holds).
 */
export type L4HashKey = L4Options['hashKey'];

/** Active TCP connect checks for services without their own `health`. */
export type L4HealthDefaults = L4Options['healthCheck'];

/** Why a connection (or a UDP flow) was refused or failed: a closed list, for logs, metrics and the api. */
export type L4Failure =
  | 'no-endpoint'
  | 'max-connections'
  | 'connect-failed'
  | 'connect-timeout'
  | 'proxy-required'
  | 'proxy-invalid'
  | 'proxy-untrusted'
  | 'proxy-timeout'
  | 'sni-invalid'
  | 'sni-timeout'
  | 'sni-no-route'
  | 'flow-table-full'
  | 'upstream-error';

export const L4_FAILURES: readonly L4Failure[] = [
  'no-endpoint',
  'max-connections',
  'connect-failed',
  'connect-timeout',
  'proxy-required',
  'proxy-invalid',
  'proxy-untrusted',
  'proxy-timeout',
  'sni-invalid',
  'sni-timeout',
  'sni-no-route',
  'flow-table-full',
  'upstream-error',
];
