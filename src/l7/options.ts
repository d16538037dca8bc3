/**
 * The L7 engine's options. Their type, defaults, units and the config file's `l7:` keys are defined once,
 * in settings.ts; this module keeps the names the engine imports.
 */
export { L7_DEFAULTS, resolveL7Options, type L7Options } from './settings.js';

/** Why an exchange ended the way it did: a closed list, for logs and metrics. */
export type ExchangeOutcome =
  | 'ok'
  | 'no-route'
  | 'no-service'
  | 'no-healthy-endpoint'
  | 'redirect-https'
  | 'forbidden'
  | 'unauthorized'
  | 'auth-throttled'
  | 'body-too-large'
  | 'bad-request'
  | 'connect-failed'
  | 'connect-timeout'
  | 'queue-full'
  | 'upstream-reset'
  | 'bad-response'
  | 'response-timeout'
  | 'idle-timeout'
  | 'client-abort'
  | 'upgraded'
  | 'draining';

/**
 * Where an exchange was when its client left (outcome `client-abort`): waiting in the endpoint's queue
 * for a connection, its connection being made, its request body still arriving, its request sent and the
 * response head awaited, its response on the way. The first two and the last two are the places
 * HAProxy's termination states CQ, CC, CH and CD name.
 */
export const CLIENT_ABORT_PHASES = ['queue', 'connect', 'request-body', 'response-head', 'response-body'] as const;
export type ClientAbortPhase = (typeof CLIENT_ABORT_PHASES)[number];
