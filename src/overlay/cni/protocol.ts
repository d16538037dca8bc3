/**
 * What the `portico-cni` plugin process and the daemon say to each other over the unix socket: one JSON
 * request line, one reply, then the daemon closes the connection. Types and constants only, so the
 * plugin loads nothing else. Two kinds of request:
 *
 * - From the Node plugin (main.ts): an `IpamRequest` line (already checked and decoded by the plugin),
 *   answered by one `IpamReply` JSON line.
 * - From the native relay (native/portico-cni.c): a `RelayRequest` line, the raw call: the CNI_*
 *   environment variables (and PORTICO_IPAM_SOCKET if set) and the stdin text, JSON-escaped. The daemon
 *   runs the plugin's own checks on it (plan.ts), executes it like an IpamRequest and answers with what
 *   the Node plugin would have printed, framed so that C reads it without a JSON decoder:
 *
 *       PCR1 <exit> <stdoutBytes> <stderrBytes>\n<stdout bytes><stderr bytes>
 *
 *   (decimal numbers, one space each; the byte counts are of the UTF-8 text that follows, exactly that
 *   many, stdout first). The relay writes stderr, then stdout, and exits with <exit>. An older daemon
 *   answers a relay request with an IpamReply line (decode error): anything that does not start with
 *   `PCR1 ` tells the relay to run the Node plugin instead.
 */

export const DEFAULT_SOCKET = '/run/portico/ipam.sock';

/** The daemon reads a request line up to this many bytes (newline included); a longer one is cut off. */
export const MAX_REQUEST_BYTES = 1 << 20;

export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;

/** CNI error codes (spec 1.1, "Error"), and ours from 100 up. */
export const CniCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  NOT_AVAILABLE_DEGRADED: 51,
  /** No free address left in the pool (host-local says 999 without a cniVersion; we use a code of our range). */
  EXHAUSTED: 100,
  /** A specific address was asked for (`IP=`, `runtimeConfig.ips`) and another container holds it. */
  ADDRESS_IN_USE: 101,
  /** The agent holds no subnet of the overlay network named in `ipam.network` (exhausted or unknown network). */
  NO_AGENT_SUBNET: 102,
  /** CHECK: no lease for this container and interface. */
  NO_LEASE: 103,
  /** Anything unexpected in the daemon. */
  INTERNAL: 199,
} as const;

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS';

export interface IpamRequest {
  command: Command;
  containerId?: string;
  netns?: string;
  ifName?: string;
  /**
   * CNI_ARGS, raw (`K=V;K2=V2`). Besides `IP=`, the daemon reads the container's owner from it
   * (PORTICO_SERVICE, PORTICO_TASK, PORTICO_TASK_ID, PORTICO_FRAMEWORK, PORTICO_PORTS: ../owner.ts).
   */
  args?: string;
  /**
   * The network configuration the plugin got on stdin, parsed, as it came: the daemon also reads the
   * owner from its `args.portico`, `runtimeConfig.portMappings` and `args["org.apache.mesos"].network_info`.
   */
  config: Record<string, unknown>;
}

export interface CniError {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

export type IpamReply = { ok: true; result?: unknown } | { ok: false; error: CniError };

/** The native relay's request line: `{"relay":1,"env":{...},"stdin":"..."}`. */
export interface RelayRequest {
  relay: typeof RELAY_VERSION;
  /** CNI_* variables and PORTICO_IPAM_SOCKET, as the relay's environment has them (UTF-8). */
  env: Record<string, string>;
  /** The network configuration text the relay read off its stdin (UTF-8). */
  stdin: string;
}

export const RELAY_VERSION = 1;

/** The first bytes of a relay reply (see the header). */
export const RELAY_REPLY_MAGIC = 'PCR1';
