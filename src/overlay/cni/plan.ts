/**
 * Everything `portico-cni` decides, as pure functions, shared by the two ways a call reaches the daemon:
 *   - the Node plugin (main.ts): reads stdin, `plan()`s, asks the daemon, renders, writes;
 *   - the native relay (native/portico-cni.c): sends the raw call (CNI_* environment + stdin text) to the
 *     daemon as a relay request; the daemon (../server.ts) runs the same `plan()`, executes the request
 *     and answers with what `render()` gives: the very stdout, stderr and exit code the Node plugin would
 *     have produced.
 * So every check, message and error code lives here once. Imports only the protocol's constants: the
 * Node plugin loads this file at every start.
 */
import {
  CniCode,
  DEFAULT_SOCKET,
  MAX_REQUEST_BYTES,
  SUPPORTED_VERSIONS,
  type CniError,
  type Command,
  type IpamReply,
  type IpamRequest,
} from './protocol.js';

/** The process environment, or the CNI_* variables a relay request carries. */
export type CniEnv = Record<string, string | undefined>;

const COMMANDS = new Set(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION']);
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** What one call comes to: a result to print (or nothing: DEL, GC, STATUS), or a CNI error. */
export type Outcome =
  | { ok: true; out?: unknown }
  | { ok: false; error: CniError; /** the caller's cniVersion, echoed in the error (default 1.1.0) */ version?: string | undefined };

/** The decision on env + stdin: answered already (VERSION, or an error), or a request for the daemon. */
export type Plan =
  | { kind: 'done'; outcome: Outcome }
  | {
      kind: 'ask';
      req: IpamRequest;
      /** req as the line sent to the daemon (newline included) */ line: string;
      socketPath: string;
      version: string | undefined;
    };

export interface Rendered {
  stdout: string;
  stderr: string;
  exit: number;
}

const fail = (code: number, msg: string, details?: string, version?: string): Outcome => ({
  ok: false,
  error: { code, msg, ...(details !== undefined ? { details } : {}) },
  version,
});

/** CNI_COMMAND checked alone: the Node plugin does this before it reads stdin. */
export function commandError(env: CniEnv): Outcome | undefined {
  const cmd = env.CNI_COMMAND ?? '';
  if (COMMANDS.has(cmd)) return undefined;
  return fail(
    CniCode.INVALID_ENV,
    cmd ? `unknown CNI_COMMAND ${JSON.stringify(cmd)}` : 'missing environment variable CNI_COMMAND',
    'CNI_COMMAND',
  );
}

function envError(cmd: string, env: CniEnv, version: string | undefined): Outcome | undefined {
  const need: string[] = [];
  if (cmd === 'ADD' || cmd === 'CHECK') need.push('CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME');
  else if (cmd === 'DEL') need.push('CNI_CONTAINERID', 'CNI_IFNAME');
  else if (cmd === 'GC') need.push('CNI_PATH');
  const missing = need.filter((n) => !env[n]);
  if (missing.length > 0)
    return fail(
      CniCode.INVALID_ENV,
      `missing environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
      missing.join(','),
      version,
    );
  const id = env.CNI_CONTAINERID;
  if (id !== undefined && id !== '' && !CONTAINER_ID_RE.test(id)) {
    return fail(CniCode.INVALID_ENV, 'invalid CNI_CONTAINERID: must match [A-Za-z0-9][A-Za-z0-9_.-]*', 'CNI_CONTAINERID', version);
  }
  const ifName = env.CNI_IFNAME;
  if (ifName !== undefined && ifName !== '' && (ifName.length > 15 || ifName === '.' || ifName === '..' || /[/:\s]/.test(ifName))) {
    return fail(CniCode.INVALID_ENV, 'invalid CNI_IFNAME: at most 15 characters, no "/", ":" or spaces', 'CNI_IFNAME', version);
  }
  return undefined;
}

/** env + the stdin text (UTF-8 decoded) → the answer, or the request to send and where. */
export function plan(env: CniEnv, text: string): Plan {
  const done = (outcome: Outcome): Plan => ({ kind: 'done', outcome });
  const early = commandError(env);
  if (early) return done(early);
  const cmd = env.CNI_COMMAND as Command | 'VERSION';
  let config: Record<string, unknown>;
  try {
    const parsed: unknown = text.trim() === '' && cmd === 'VERSION' ? {} : JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    config = parsed as Record<string, unknown>;
  } catch (e) {
    return done(fail(CniCode.DECODE_FAILURE, 'cannot decode the network configuration on stdin', (e as Error).message));
  }
  const version = typeof config.cniVersion === 'string' ? config.cniVersion : undefined;
  if (cmd === 'VERSION') return done({ ok: true, out: { cniVersion: version ?? '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] } });
  if (version !== undefined && !(SUPPORTED_VERSIONS as readonly string[]).includes(version)) {
    return done(
      fail(CniCode.INCOMPATIBLE_VERSION, `incompatible CNI version ${version}`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`, version),
    );
  }
  const bad = envError(cmd, env, version);
  if (bad) return done(bad);
  if (typeof config.name !== 'string' || config.name === '')
    return done(fail(CniCode.INVALID_CONFIG, 'network configuration has no "name"', 'name', version));
  const ipam = config.ipam;
  if (typeof ipam !== 'object' || ipam === null || Array.isArray(ipam))
    return done(fail(CniCode.INVALID_CONFIG, 'network configuration has no "ipam" object', 'ipam', version));
  const sockOpt = (ipam as Record<string, unknown>).socket;
  if (sockOpt !== undefined && (typeof sockOpt !== 'string' || sockOpt === ''))
    return done(fail(CniCode.INVALID_CONFIG, '"ipam.socket" must be a non-empty path', 'ipam.socket', version));
  const socketPath = (sockOpt as string | undefined) ?? env.PORTICO_IPAM_SOCKET ?? DEFAULT_SOCKET;

  const req: IpamRequest = { command: cmd, config };
  if (env.CNI_CONTAINERID) req.containerId = env.CNI_CONTAINERID;
  if (env.CNI_NETNS) req.netns = env.CNI_NETNS;
  if (env.CNI_IFNAME) req.ifName = env.CNI_IFNAME;
  if (env.CNI_ARGS) req.args = env.CNI_ARGS;
  // The config as sent is the one parsed and serialized again, which can be longer than what came on
  // stdin (1e20 is sent as 21 digits). Over the daemon's limit it is refused here, with the reason: a
  // cut-off request would look like a daemon gone away (code 11, "try again"), which retrying never mends.
  const line = `${JSON.stringify(req)}\n`;
  const bytes = Buffer.byteLength(line);
  if (bytes > MAX_REQUEST_BYTES) {
    return done(
      fail(
        CniCode.INVALID_CONFIG,
        'network configuration too large for the Portico IPAM daemon',
        `${bytes} bytes as sent, at most ${MAX_REQUEST_BYTES}`,
        version,
      ),
    );
  }
  return { kind: 'ask', req, line, socketPath, version };
}

/** The daemon's reply to a planned request. */
export function fromReply(p: Extract<Plan, { kind: 'ask' }>, reply: IpamReply): Outcome {
  if (!reply.ok) return fail(reply.error.code, reply.error.msg, reply.error.details, p.version);
  return reply.result === undefined ? { ok: true } : { ok: true, out: reply.result };
}

/** The daemon could not be asked (no socket, refused, hung up, timed out). */
export function unavailable(p: Extract<Plan, { kind: 'ask' }>, err: { code?: string | undefined; message: string }): Outcome {
  // DEL must succeed when there is nothing to release; with no daemon we cannot know, so it is an error
  // the runtime retries (code 11), never a silent success that would leak the lease.
  const code = p.req.command === 'STATUS' ? CniCode.NOT_AVAILABLE : CniCode.TRY_AGAIN_LATER;
  return fail(code, `the Portico IPAM daemon is unavailable at ${p.socketPath}`, `${err.code ?? ''} ${err.message}`.trim(), p.version);
}

/** Something unexpected in the plugin itself. */
export function internal(e: unknown, version?: string): Outcome {
  return fail(CniCode.INTERNAL, 'internal error in portico-cni', String((e as Error)?.stack ?? e), version);
}

/**
 * What the process prints and its exit code: the result JSON (if any) on stdout and 0, or the error JSON
 * on stdout, a log line on stderr and 1. (The Node plugin writes stderr first, then stdout; the relay too.)
 * PORTICO_CNI_TIMING's line is not part of it: each process adds its own.
 */
export function render(env: CniEnv, o: Outcome): Rendered {
  if (o.ok) return { stdout: o.out !== undefined ? `${JSON.stringify(o.out)}\n` : '', stderr: '', exit: 0 };
  const err = o.error;
  const body = { cniVersion: o.version ?? '1.1.0', ...err };
  return {
    stdout: `${JSON.stringify(body)}\n`,
    stderr: `portico-cni: ${env.CNI_COMMAND ?? '?'} ${env.CNI_CONTAINERID ?? ''} ${env.CNI_IFNAME ?? ''}: ${err.msg}${err.details ? ` (${err.details})` : ''}\n`,
    exit: 1,
  };
}
