/**
 * Structured logging (pino), shared by every part. Child loggers carry `component`.
 * Redaction: anything under a key named like a secret is censored before it is written, so a
 * config or an error object that carries a key or token cannot leak it into the logs.
 */
import pino from 'pino';

export type Logger = pino.Logger;

export const REDACT_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'key',
  '*.key',
  'privateKey',
  '*.privateKey',
  'private_key',
  '*.private_key',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'secrets.*',
];

export interface LogOptions {
  level?: string;
  /** Write here instead of stdout (tests capture logs this way). */
  destination?: pino.DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.PORTICO_LOG_LEVEL ?? 'info';
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** A logger that writes nothing: for library use and tests that do not look at logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
