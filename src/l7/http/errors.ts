/**
 * Errors of the HTTP/1.1 parser: one closed list of stable codes (llhttp's `HPE_` style, reusing its
 * names where the meaning is the same), each with the status a server answers a bad *request* with.
 * A bad *response* (an upstream's) is answered 502 by the proxy whatever the code's status says.
 *
 * Every code is a rejection: the message is not processed, and the connection must be closed after the
 * error response (the parser will not continue; `reset()` exists for tests and reuse).
 */

export const ParseErrors = {
  // start line
  HPE_INVALID_METHOD: { status: 400, message: 'method is not a token, or is not followed by a single SP' },
  HPE_METHOD_NOT_IMPLEMENTED: { status: 501, message: 'method is a valid token but not one we implement' },
  HPE_INVALID_URL: { status: 400, message: 'invalid request-target' },
  HPE_URI_TOO_LONG: { status: 414, message: 'request-target longer than maxTargetBytes' },
  HPE_INVALID_VERSION: { status: 400, message: 'malformed HTTP-version or start line terminator' },
  HPE_VERSION_NOT_SUPPORTED: { status: 505, message: 'HTTP version other than HTTP/1.0 and HTTP/1.1' },
  HPE_INVALID_STATUS: { status: 400, message: 'malformed status line (status code not 3 digits in 100-599, bad reason phrase)' },
  // line structure
  HPE_CR_EXPECTED: { status: 400, message: 'bare LF: lines must end with CRLF' },
  HPE_LF_EXPECTED: { status: 400, message: 'bare CR: CR not followed by LF' },
  HPE_OBS_FOLD: { status: 400, message: 'field line starting with whitespace (obs-fold, or SP/HTAB after the start line)' },
  // fields
  HPE_INVALID_HEADER_TOKEN: { status: 400, message: 'invalid field name (empty, non-tchar, or whitespace before the colon)' },
  HPE_INVALID_HEADER_VALUE: { status: 400, message: 'NUL, CTL or DEL in a field value' },
  HPE_HEADER_OVERFLOW: { status: 431, message: 'head (or trailer section) larger than maxHeaderBytes' },
  HPE_TOO_MANY_HEADERS: { status: 431, message: 'more than maxHeaders field lines' },
  // framing
  HPE_INVALID_CONTENT_LENGTH: { status: 400, message: 'Content-Length is not 1*DIGIT, or exceeds 2^53-1' },
  HPE_DUPLICATE_CONTENT_LENGTH: { status: 400, message: 'more than one Content-Length field (even with equal values)' },
  HPE_CL_AND_TE: { status: 400, message: 'both Content-Length and Transfer-Encoding' },
  HPE_TE_IN_HTTP10: { status: 400, message: 'Transfer-Encoding in an HTTP/1.0 message' },
  HPE_INVALID_TRANSFER_ENCODING: {
    status: 400,
    message: 'Transfer-Encoding malformed, chunked twice, or (request) chunked not the final coding',
  },
  HPE_TRANSFER_ENCODING_NOT_IMPLEMENTED: { status: 501, message: 'request transfer coding other than chunked' },
  // request semantics
  HPE_MISSING_HOST: { status: 400, message: 'HTTP/1.1 request without Host' },
  HPE_DUPLICATE_HOST: { status: 400, message: 'more than one Host field' },
  HPE_INVALID_HOST: { status: 400, message: 'Host is not a valid uri-host[:port]' },
  HPE_HOST_MISMATCH: { status: 400, message: 'absolute-form authority differs from Host' },
  HPE_INVALID_CONNECTION: { status: 400, message: 'Connection is not a list of tokens' },
  HPE_INVALID_UPGRADE: { status: 400, message: 'Connection: upgrade in an HTTP/1.0 request' },
  // chunked body
  HPE_INVALID_CHUNK_SIZE: { status: 400, message: 'chunk size empty, not hex, over 16 digits or 2^53-1, or followed by whitespace' },
  HPE_INVALID_CHUNK_EXTENSION: { status: 400, message: 'malformed chunk extension' },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 413, message: 'chunk extensions of one message larger than maxHeaderBytes' },
  HPE_MISSING_CHUNK_CRLF: { status: 400, message: 'chunk data not followed by CRLF' },
  HPE_INVALID_TRAILER: {
    status: 400,
    message: 'a framing or routing field (Host, Content-Length, Transfer-Encoding, Connection, Upgrade, Expect) in trailers',
  },
  // connection
  HPE_INVALID_EOF_STATE: { status: 400, message: 'connection closed in the middle of a message' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ParseErrorCode = keyof typeof ParseErrors;

/** Why we may refuse (or stop reading) where Node accepts: an error code, or a non-error stop. */
export type StrictnessReason = ParseErrorCode | 'CONNECTION_CLOSE';

/**
 * Where we reject on purpose what Node's llhttp (strict mode) accepts, and why. The differential test
 * (test/l7/http/differential.test.ts) fails on any "we reject, Node accepts" whose reason is not here.
 */
export const STRICTER_THAN_NODE: Readonly<Partial<Record<StrictnessReason, string>>> = Object.freeze({
  CONNECTION_CLOSE:
    'not an error: "close" wins over "keep-alive" in Connection (RFC 9112 §9.3); llhttp keeps an HTTP/1.0 ' +
    'connection open when both are named, we stop reading after that message',
  HPE_INVALID_URL:
    '"#" in the target; "*" with a method other than OPTIONS; CONNECT without authority-form ' +
    'or authority-form without CONNECT; absolute-form with userinfo or a bad authority; two SP after the method',
  HPE_INVALID_HOST: 'Host syntax is checked (uri-host[:port], port 1-65535); llhttp does not look at it',
  HPE_DUPLICATE_HOST: 'two Host fields',
  HPE_MISSING_HOST: 'an HTTP/1.1 upgrade or CONNECT without Host (Node checks Host only for requests it serves itself)',
  HPE_HOST_MISMATCH: 'absolute-form authority must equal Host (case-insensitive, no port defaulting)',
  HPE_TE_IN_HTTP10: 'Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1: treat the framing as faulty)',
  HPE_INVALID_TRANSFER_ENCODING: 'empty list elements (",chunked"), transfer-parameters and HTAB are refused in Transfer-Encoding',
  HPE_TRANSFER_ENCODING_NOT_IMPLEMENTED: 'requests may only use "chunked" (gzip, chunked → 501)',
  HPE_INVALID_CONNECTION: 'Connection must be a list of tokens, without HTAB (llhttp reads "close<HTAB>" as not close)',
  HPE_URI_TOO_LONG: "a target over maxTargetBytes (8 KiB) in a head that fits Node's 16 KiB",
  HPE_INVALID_UPGRADE: 'an HTTP/1.0 upgrade is ambiguous (RFC: ignore it; llhttp: tunnel) so it is refused',
  HPE_INVALID_CHUNK_SIZE: 'more than 16 hex digits (even leading zeros)',
  HPE_INVALID_CHUNK_EXTENSION: 'an empty extension value (";a=")',
  HPE_CR_EXPECTED: 'a bare LF before the request line (llhttp skips it)',
  HPE_LF_EXPECTED: 'a bare CR before the request line (llhttp skips it)',
  HPE_VERSION_NOT_SUPPORTED: 'HTTP/0.9 and HTTP/2.0 in a request line with fields (llhttp parses them as HTTP/1)',
  HPE_INVALID_VERSION: 'more than one SP between the target and the version (llhttp skips them)',
  HPE_INVALID_TRAILER:
    'Host, Upgrade and Expect in trailers (llhttp rejects Content-Length and Transfer-Encoding there, and obeys Connection)',
  HPE_INVALID_CONTENT_LENGTH: 'values in 2^53 .. 2^64-1; HTAB anywhere after the first digit',
  HPE_TOO_MANY_HEADERS: 'Node has no count limit (it truncates at 2000)',
  HPE_HEADER_OVERFLOW: 'our budget counts every byte of the head; Node counts field and target bytes',
});

export class ParseError extends Error {
  readonly code: ParseErrorCode;
  /** What a server answers a bad request with (400, 413, 414, 431, 501, 505). A proxy answers a bad response with 502. */
  readonly status: number;
  constructor(code: ParseErrorCode, detail?: string) {
    const def = ParseErrors[code];
    super(detail === undefined ? def.message : `${def.message}: ${detail}`);
    this.name = 'ParseError';
    this.code = code;
    this.status = def.status;
  }
}
