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
  | 'client-closed'
  | 'upgraded'
  | 'draining';
