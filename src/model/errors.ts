/**
 * The error registry's base. Every error Portico throws on purpose is a PorticoError with a stable
 * machine `code` (`PORTICO_<AREA>_<WHAT>`) and, where it reaches an HTTP edge, a status.
 * Areas add their own subclasses beside their code; the codes are listed once, here.
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'PORTICO_CONFIG_INVALID',
  CONFIG_READ: 'PORTICO_CONFIG_READ',
  STORE_UNAVAILABLE: 'PORTICO_STORE_UNAVAILABLE',
  STORE_CONFLICT: 'PORTICO_STORE_CONFLICT',
  STORE_CORRUPT: 'PORTICO_STORE_CORRUPT',
  STORE_CLOSED: 'PORTICO_STORE_CLOSED',
  STORE_LEASE_NOT_FOUND: 'PORTICO_STORE_LEASE_NOT_FOUND',
  API_UNAUTHORIZED: 'PORTICO_API_UNAUTHORIZED',
  API_NOT_FOUND: 'PORTICO_API_NOT_FOUND',
  API_BAD_REQUEST: 'PORTICO_API_BAD_REQUEST',
  LISTEN_FAILED: 'PORTICO_LISTEN_FAILED',
  PKI_INVALID_REQUEST: 'PORTICO_PKI_INVALID_REQUEST',
  PKI_POLICY: 'PORTICO_PKI_POLICY',
  PKI_NOT_FOUND: 'PORTICO_PKI_NOT_FOUND',
  PKI_KEY: 'PORTICO_PKI_KEY',
  PKI_CONFLICT: 'PORTICO_PKI_CONFLICT',
  OVERLAY_CONFIG_INVALID: 'PORTICO_OVERLAY_CONFIG_INVALID',
  OVERLAY_SUBNETS_EXHAUSTED: 'PORTICO_OVERLAY_SUBNETS_EXHAUSTED',
  OVERLAY_NETWORK_CHANGED: 'PORTICO_OVERLAY_NETWORK_CHANGED',
  OVERLAY_PROGRAM_FAILED: 'PORTICO_OVERLAY_PROGRAM_FAILED',
  IPAM_EXHAUSTED: 'PORTICO_IPAM_EXHAUSTED',
  IPAM_ADDRESS_IN_USE: 'PORTICO_IPAM_ADDRESS_IN_USE',
  MARATHON_UNAVAILABLE: 'PORTICO_MARATHON_UNAVAILABLE',
  /** No data-plane worker could answer (none live yet, or it did not answer in time). */
  WORKER_UNAVAILABLE: 'PORTICO_WORKER_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class PorticoError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message: string, status = 500, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PorticoError';
    this.code = code;
    this.status = status;
  }
}

/** One validation problem, with the path into the document (`services.web.endpoints[1].port`). */
export interface ValidationIssue {
  path: string;
  message: string;
  /** 1-based line in the source file, when known. */
  line?: number;
  column?: number;
}

export class ValidationError extends PorticoError {
  readonly issues: ValidationIssue[];
  readonly file?: string;
  constructor(issues: ValidationIssue[], file?: string) {
    super(ErrorCodes.CONFIG_INVALID, formatIssues(issues, file), 400);
    this.name = 'ValidationError';
    this.issues = issues;
    if (file !== undefined) this.file = file;
  }
}

export function formatIssues(issues: ValidationIssue[], file?: string): string {
  const lines = issues.map((i) => {
    const where = file ? `${file}${i.line ? `:${i.line}${i.column ? `:${i.column}` : ''}` : ''}: ` : '';
    return `${where}${i.path ? `${i.path}: ` : ''}${i.message}`;
  });
  return lines.join('\n');
}
