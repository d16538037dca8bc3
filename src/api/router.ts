/**
 * The admin api's plumbing: a method+path router with `:params`, replies, body reading with a size cap,
 * and the one place where errors become HTTP responses.
 *
 * The router is a segment trie (static segments before `:params`), so a lookup walks the path once
 * instead of testing every route; the admin api is not a hot path, but every area adds its routes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ErrorCode, ErrorCodes, PorticoError, ValidationError } from '../model/errors.js';
import type { RouteDoc, RouteHandler } from './types.js';

export const JSON_TYPE = 'application/json; charset=utf-8';

/** Default cap on a request body: 1 MiB, far above any config file, far below memory trouble. */
export const DEFAULT_BODY_LIMIT = 1 << 20;

/** Error code in the body of a 500; deliberately says nothing about what went wrong. */
export const INTERNAL_ERROR_CODE = 'PORTICO_INTERNAL';

export interface RouteEntry {
  method: string;
  /** `/v1/certs/:name` */
  pattern: string;
  handler: RouteHandler;
  auth: boolean;
  bodyLimit: number;
  doc?: RouteDoc;
  /** Names of the `:params`, in order. */
  params: string[];
}

export type Match =
  | { kind: 'found'; route: RouteEntry; params: Record<string, string> }
  /** The path exists, but not for this method: 405 with `Allow`. */
  | { kind: 'method'; allowed: string[] }
  | { kind: 'none' };

interface Node {
  children: Map<string, Node>;
  param?: { name: string; node: Node };
  methods: Map<string, RouteEntry>;
}

const newNode = (): Node => ({ children: new Map(), methods: new Map() });

export class Router {
  private readonly root = newNode();
  private readonly entries: RouteEntry[] = [];

  /**
   * Register `method pattern`. Throws on a duplicate, or on a `:param` whose name differs from one
   * already registered at the same place (`/x/:id` and `/x/:name` could never both be reached).
   */
  add(
    method: string,
    pattern: string,
    handler: RouteHandler,
    opts: { auth?: boolean; bodyLimit?: number; doc?: RouteDoc } = {},
  ): RouteEntry {
    const m = method.toUpperCase();
    if (!pattern.startsWith('/')) throw new TypeError(`route ${m} ${pattern}: a path starts with "/"`);
    let node = this.root;
    const params: string[] = [];
    for (const seg of segments(pattern)) {
      if (seg.startsWith(':')) {
        const name = seg.slice(1);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new TypeError(`route ${m} ${pattern}: bad parameter name "${seg}"`);
        if (params.includes(name)) throw new TypeError(`route ${m} ${pattern}: parameter "${name}" appears twice`);
        if (node.param && node.param.name !== name) {
          throw new TypeError(`route ${m} ${pattern}: ":${name}" clashes with ":${node.param.name}" registered at the same place`);
        }
        node.param ??= { name, node: newNode() };
        node = node.param.node;
        params.push(name);
      } else {
        let next = node.children.get(seg);
        if (!next) node.children.set(seg, (next = newNode()));
        node = next;
      }
    }
    if (node.methods.has(m)) throw new TypeError(`route ${m} ${pattern} is already registered`);
    const entry: RouteEntry = {
      method: m,
      pattern,
      handler,
      auth: opts.auth ?? true,
      bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT,
      params,
    };
    if (opts.doc) entry.doc = opts.doc;
    node.methods.set(m, entry);
    this.entries.push(entry);
    return entry;
  }

  /** Every route, in registration order. */
  routes(): readonly RouteEntry[] {
    return this.entries;
  }

  /** Find the route for `method path`. HEAD falls back to GET (Node sends the headers only). */
  match(method: string, path: string): Match {
    const values: string[] = [];
    const node = walk(this.root, segments(path), 0, values);
    if (!node || node.methods.size === 0) return { kind: 'none' };
    const m = method.toUpperCase();
    const route = node.methods.get(m) ?? (m === 'HEAD' ? node.methods.get('GET') : undefined);
    if (!route) {
      const allowed = [...node.methods.keys()];
      if (node.methods.has('GET') && !node.methods.has('HEAD')) allowed.push('HEAD');
      return { kind: 'method', allowed: allowed.sort() };
    }
    const params: Record<string, string> = {};
    route.params.forEach((name, i) => (params[name] = values[i] as string));
    return { kind: 'found', route, params };
  }
}

/** `/a/b/` → ['a', 'b', '']: a trailing slash is a different path (and matches nothing registered). */
function segments(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

/** Depth-first: a static segment wins over a `:param`, backtracking if the static branch dead-ends. */
function walk(node: Node, segs: string[], i: number, values: string[]): Node | undefined {
  if (i === segs.length) return node.methods.size > 0 ? node : undefined;
  const seg = segs[i] as string;
  const child = node.children.get(seg);
  if (child) {
    const found = walk(child, segs, i + 1, values);
    if (found) return found;
  }
  if (node.param && seg !== '') {
    const value = safeDecode(seg);
    if (value === undefined) return undefined; // malformed %-escape: no such resource
    values.push(value);
    const found = walk(node.param.node, segs, i + 1, values);
    if (found) return found;
    values.pop();
  }
  return undefined;
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** What a handler can return for full control over status, headers and body. */
export class Reply {
  private constructor(
    readonly status: number,
    readonly contentType: string | undefined,
    readonly body: string | Buffer | undefined,
    readonly headers: Readonly<Record<string, string>>,
  ) {}

  static json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
    return new Reply(status, JSON_TYPE, JSON.stringify(value) ?? 'null', headers);
  }

  /** A non-JSON body (Prometheus text, a UI asset). */
  static raw(status: number, contentType: string, body: string | Buffer, headers: Record<string, string> = {}): Reply {
    return new Reply(status, contentType, body, headers);
  }

  static empty(status = 204, headers: Record<string, string> = {}): Reply {
    return new Reply(status, undefined, undefined, headers);
  }
}

/**
 * Write `reply`. Every response is marked uncacheable: it is token-protected, changes with each table,
 * or both.
 */
export function send(res: ServerResponse, reply: Reply): void {
  const headers: Record<string, string | number> = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...reply.headers };
  if (reply.body !== undefined && reply.contentType !== undefined) {
    headers['content-type'] = reply.contentType;
    headers['content-length'] = Buffer.byteLength(reply.body);
  }
  res.writeHead(reply.status, headers);
  res.end(reply.body);
}

/** An error body: `{ error: { code, message, ...extra } }`. */
export function errorBody(code: string, message: string, extra: Record<string, unknown> = {}): { error: Record<string, unknown> } {
  return { error: { code, message, ...extra } };
}

/** A PorticoError that also sets response headers (`Allow`, `WWW-Authenticate`). */
export class ApiError extends PorticoError {
  readonly headers: Readonly<Record<string, string>>;
  constructor(code: ErrorCode, message: string, status: number, headers: Record<string, string> = {}) {
    super(code, message, status);
    this.name = 'ApiError';
    this.headers = headers;
  }
}

/**
 * The response for a thrown error. `internal` is true for anything that is not a deliberate 4xx (an
 * unknown error, or a PorticoError with a 5xx status): the caller logs it with its stack, and the client
 * gets the request id to quote. An unknown error's message never reaches the client (it may hold paths,
 * hosts or worse).
 */
export function errorReply(err: unknown, requestId: string): { reply: Reply; internal: boolean } {
  if (err instanceof ValidationError) {
    return { reply: Reply.json(400, errorBody(err.code, err.message, { issues: err.issues })), internal: false };
  }
  if (err instanceof PorticoError) {
    const status = err.status >= 400 && err.status <= 599 ? err.status : 500;
    // A 413 leaves an unread body on the connection: close it rather than read the rest.
    const headers: Record<string, string> = status === 413 ? { connection: 'close' } : {};
    if (err instanceof ApiError) Object.assign(headers, err.headers);
    const internal = status >= 500;
    return { reply: Reply.json(status, errorBody(err.code, err.message, internal ? { requestId } : {}), headers), internal };
  }
  return { reply: Reply.json(500, errorBody(INTERNAL_ERROR_CODE, 'internal error', { requestId })), internal: true };
}

export const badRequest = (message: string): ApiError => new ApiError(ErrorCodes.API_BAD_REQUEST, message, 400);
export const notFound = (message: string): ApiError => new ApiError(ErrorCodes.API_NOT_FOUND, message, 404);

/**
 * Read a request body of at most `limit` bytes. A declared `content-length` over the limit is refused
 * before reading anything; a chunked body is refused as soon as it passes the limit (the rest is
 * discarded, and the connection closed after the 413).
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (): ApiError => new ApiError(ErrorCodes.API_BAD_REQUEST, `request body is larger than ${limit} bytes`, 413);
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        done();
        req.resume(); // drain and drop the rest
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      done();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      done();
      reject(err);
    };
    const onClose = (): void => {
      done();
      reject(new ApiError(ErrorCodes.API_BAD_REQUEST, 'request body aborted by the client', 400));
    };
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** The media type of a request, lower-cased, parameters dropped (`text/yaml; charset=utf-8` → `text/yaml`). */
export function mediaType(req: IncomingMessage): string | undefined {
  const ct = req.headers['content-type'];
  if (!ct) return undefined;
  return (ct.split(';')[0] as string).trim().toLowerCase();
}

/** A non-negative integer query parameter; `undefined` when absent, 400 when present but not one. */
export function intParam(query: URLSearchParams, name: string): number | undefined {
  const v = query.get(name);
  if (v === null) return undefined;
  const n = /^\d{1,15}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw badRequest(`query parameter "${name}" must be a non-negative integer, got "${v}"`);
  return n;
}
