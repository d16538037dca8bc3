/**
 * The L7 engine's settings, defined once: the config file's `l7:` section (schema, description, default)
 * and the engine's options (`L7Options`, engine units: `…Ms` milliseconds, `…Bytes` bytes) come from the
 * same line. Per-route `timeouts` and `maxBody` override the matching ones.
 */
import { bool, duration, HTTP_TOKEN, int, num, resolveSettings, section, size, str, type ValueOf } from '../model/settings.js';

export const l7Settings = section('The L7 (HTTP) engine. Per-route timeouts and maxBody override the matching ones.', {
  accessLog: bool('One JSON access-log line per request (pino, component "access").', true),
  headerTimeoutMs: duration(
    'A client must send a whole request head within this long of its first byte (slowloris); 408 after it.',
    '10s',
    { min: 1 },
  ),
  keepAliveTimeoutMs: duration('An idle keep-alive client connection (between requests) is closed after this long.', '60s', { min: 1 }),
  connectTimeoutMs: duration('Connecting to an endpoint, queueing for a pool slot included (route timeouts.connect).', '5s', { min: 1 }),
  responseHeaderTimeoutMs: duration('From request sent to response head received; 504 after it (route timeouts.responseHeader).', '60s', {
    min: 1,
  }),
  idleTimeoutMs: duration('No byte either way while a body streams (route timeouts.idle).', '60s', { min: 1 }),
  tunnelIdleTimeoutMs: duration('An upgraded (WebSocket) tunnel with no traffic either way is closed after this long.', '1h', { min: 1 }),
  abortOnClose: bool(
    'A client that half-closes (FIN) after a complete request, before its response has begun, aborts the request and its upstream connection (HAProxy option abortonclose). Off, it is answered, as HTTP/1.1 allows. A client that closes, resets, or half-closes before its request is complete always aborts.',
    false,
  ),
  upstreamKeepAliveMs: duration('An idle pooled connection to an endpoint is closed after this long.', '30s', { min: 1 }),
  maxConnectionsPerEndpoint: int('Open connections per endpoint at most; further requests queue (HAProxy maxconn).', 1024, {
    min: 1,
    max: 1_000_000,
  }),
  maxQueuePerEndpoint: int('Requests waiting for a connection per endpoint at most; beyond it, 503.', 1024, { min: 0, max: 1_000_000 }),
  maxBodyBytes: size('Request body limit when the route sets no maxBody; 413 above it. 0: no limit.', 0),
  maxHeaderBytes: size('Request head limit (start line and header fields); 431 above it.', '16KiB', { min: 1024 }),
  maxTargetBytes: size('Request-target (path and query) limit; 414 above it.', '8KiB', { min: 256, max: 1 << 20 }),
  maxHeaders: int('Header fields per request head at most; 431 above it.', 100, { min: 1, max: 10_000 }),
  retries: int('Attempts after the first: on connect failures, and on 502/503 for idempotent requests with no body.', 2, {
    min: 0,
    max: 10,
  }),
  retryBudget: num('Retries in flight at most, as a share of requests in flight (Envoy retry budget).', 0.2, { min: 0, max: 1 }),
  minRetryConcurrency: int('Retries always allowed in flight, whatever the budget says (so a quiet service can retry).', 3, {
    min: 0,
    max: 10_000,
  }),
  passiveFailures: int('Consecutive failures (connect errors, 5xx) that eject an endpoint passively.', 5, { min: 1, max: 1000 }),
  timerResolutionMs: duration('How often the engine checks its deadlines: timeouts fire up to this much late.', '250ms', {
    min: 10,
    max: 1000,
  }),
  viaName: str('The name this proxy gives itself in the Via header.', 'portico', HTTP_TOKEN),
  authHashesPerSecond: int(
    'basicAuth: password hashings per second for credentials not yet verified (crypt costs milliseconds of CPU); beyond it such requests get 429. Verified credentials are never hashed again.',
    20,
    { min: 1, max: 100_000 },
  ),
});

/** The L7 engine's settings (engine units), as the `l7:` section of the config file decodes to. */
export type L7Options = ValueOf<typeof l7Settings>;

/** Every default of the `l7:` section, decoded. */
export const L7_DEFAULTS: Readonly<L7Options> = l7Settings.defaultValue as L7Options;

/** L7 options from a partial value given in code: defaults filled, every value checked (TypeError naming it). */
export function resolveL7Options(partial: Partial<L7Options> = {}): Readonly<L7Options> {
  return resolveSettings(l7Settings, partial, 'l7 option');
}
