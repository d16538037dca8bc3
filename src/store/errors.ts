/**
 * Errors the Store layer throws on purpose. Callers branch on `code`, never on message text; the
 * message is for operators and always says where (file and offset, or the Redis URL without its
 * password) and what to do.
 */
import { ErrorCodes, PorticoError } from '../model/errors.js';

export type StoreErrorCode =
  | typeof ErrorCodes.STORE_UNAVAILABLE
  | typeof ErrorCodes.STORE_CONFLICT
  | typeof ErrorCodes.STORE_CORRUPT
  | typeof ErrorCodes.STORE_CLOSED
  | typeof ErrorCodes.STORE_LEASE_NOT_FOUND;

/**
 * HTTP status at the api edge. UNAVAILABLE is 503 because it is transient from the client's point of
 * view (Redis failing over, a journal that must be reopened); CORRUPT is 500 because retrying will
 * not help; CONFLICT is 409 for callers that turn a failed compare-and-set into an error.
 */
const STATUS: Record<StoreErrorCode, number> = {
  [ErrorCodes.STORE_UNAVAILABLE]: 503,
  [ErrorCodes.STORE_CONFLICT]: 409,
  [ErrorCodes.STORE_CORRUPT]: 500,
  [ErrorCodes.STORE_CLOSED]: 503,
  [ErrorCodes.STORE_LEASE_NOT_FOUND]: 404,
};

export class StoreError extends PorticoError {
  declare readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, STATUS[code], options);
    this.name = 'StoreError';
  }
}

export function storeClosed(kind: string): StoreError {
  return new StoreError(ErrorCodes.STORE_CLOSED, `${kind} store is closed`);
}

export function leaseNotFound(id: string): StoreError {
  return new StoreError(ErrorCodes.STORE_LEASE_NOT_FOUND, `lease ${JSON.stringify(id)} not found or expired`);
}

// Argument checks shared by both implementations, so that a caller cannot come to depend on one
// store's leniency.

/** A UTF-16 surrogate without its pair: it cannot be encoded as UTF-8, so it would not survive a restart. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError(`store key must be a non-empty string, got ${JSON.stringify(key)}`);
  if (LONE_SURROGATE.test(key)) throw new TypeError(`store key ${JSON.stringify(key)} is not well-formed Unicode`);
}

export function checkTtl(ttlMs: unknown): asserts ttlMs is number {
  if (typeof ttlMs !== 'number' || !Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > 2 ** 31) {
    throw new RangeError(`lease ttlMs must be a positive integer number of milliseconds (≤ 2^31), got ${String(ttlMs)}`);
  }
}

export function checkRevision(rev: unknown, what: string): asserts rev is number {
  if (typeof rev !== 'number' || !Number.isSafeInteger(rev) || rev < 0) {
    throw new RangeError(`${what} must be a non-negative integer revision, got ${String(rev)}`);
  }
}

export function toBuffer(value: Buffer | string): Buffer {
  // Copy caller-owned Buffers: the store keeps the bytes, and a caller reusing its buffer must not
  // change what the store holds.
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
}
