/**
 * The L7 engine's settings, with defaults and units beside each. Per-route timeouts and body limits in
 * the table override the matching defaults here.
 */
export interface L7Options {
  /** A client must send a complete request head within this long of its first byte (slowloris). 10 s. */
  headerTimeoutMs: number;
  /** An idle keep-alive client connection (between requests) is closed after this long. 60 s. */
  keepAliveTimeoutMs: number;
  /** Connecting to an endpoint, including time queued for a pool slot. 5 s (route `timeouts.connect`). */
  connectTimeoutMs: number;
  /** From the request sent to the response head received. 60 s (route `timeouts.responseHeader`). */
  responseHeaderTimeoutMs: number;
  /** No byte either way while a body streams. 60 s (route `timeouts.idle`). */
  idleTimeoutMs: number;
  /** A WebSocket / upgraded tunnel with no byte either way is closed after this long. 1 h. */
  tunnelIdleTimeoutMs: number;
  /** An idle pooled upstream connection is closed after this long. 30 s. */
  upstreamKeepAliveMs: number;
  /** Open connections per endpoint at most. 1024. */
  maxConnectionsPerEndpoint: number;
  /** Requests waiting for a connection per endpoint at most; beyond it, 503. 1024. */
  maxQueuePerEndpoint: number;
  /** Request body limit when the route sets none; 0 = no limit. 0. */
  maxBodyBytes: number;
  /** Request head limit (start line + fields), bytes → 431. 16 KiB. */
  maxHeaderBytes: number;
  /** Request-target limit, bytes → 414. 8 KiB. */
  maxTargetBytes: number;
  /** Field lines per head → 431. 100. */
  maxHeaders: number;
  /** Attempts after the first for one request. 2. */
  retries: number;
  /** Retries in flight at most, as a share of requests in flight (Envoy's retry budget). 0.2. */
  retryBudget: number;
  /** Retries always allowed in flight, whatever the budget says (so a quiet service can retry). 3. */
  minRetryConcurrency: number;
  /** Consecutive failures (connect errors, 5xx) that eject an endpoint passively. 5. */
  passiveFailures: number;
  /** One JSON access-log line per request (pino, component `access`). true. */
  accessLog: boolean;
  /** Timer resolution, ms (the coarse timer wheel). 250. */
  timerResolutionMs: number;
  /** Name in `Via`. */
  viaName: string;
  /**
   * Basic-auth password hashings (crypt, milliseconds of CPU each) per second for credentials not yet
   * verified; beyond it such requests get 429 (verified credentials are never hashed again). 20.
   */
  authHashesPerSecond: number;
}

export const L7_DEFAULTS: Readonly<L7Options> = Object.freeze({
  headerTimeoutMs: 10_000,
  keepAliveTimeoutMs: 60_000,
  connectTimeoutMs: 5_000,
  responseHeaderTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  tunnelIdleTimeoutMs: 3_600_000,
  upstreamKeepAliveMs: 30_000,
  maxConnectionsPerEndpoint: 1024,
  maxQueuePerEndpoint: 1024,
  maxBodyBytes: 0,
  maxHeaderBytes: 16_384,
  maxTargetBytes: 8_192,
  maxHeaders: 100,
  retries: 2,
  retryBudget: 0.2,
  minRetryConcurrency: 3,
  passiveFailures: 5,
  accessLog: true,
  timerResolutionMs: 250,
  viaName: 'portico',
  authHashesPerSecond: 20,
});

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
