/**
 * The data planes `portico up` runs, in start order (stop order is the reverse). Like CoreDNS's
 * plugin.cfg, this list is the one place a data plane is registered: a new plane is one entry here (its
 * import, a `create` that builds it from the plane context, and the admin api resources it answers), and
 * the composition root does not change.
 *
 * A plane is created where it serves: in a data-plane worker process (src/workers/worker.ts, `workers: N`)
 * or, with `workers: 0` or when `up()` runs as a library, in the control process itself. Either way it is
 * fed the served tables of src/aggregator/pipeline.ts and nothing else (the data-plane contract,
 * src/model/plane.ts); certificates and session keys reach it through `PlaneContext.keys`, and its api
 * resources are registered by the control process, answered by the plane through `PlaneQuery`.
 *
 * Active health checks: in one process a plane probes its endpoints itself (`health` absent). With
 * several workers only one of them probes (`health.mode: 'probe'`, its transitions `publish`ed to the
 * control, which hands them to the others); the others' planes `follow`: they take those verdicts through
 * the plane's `setHealthVerdict` (src/model/plane.ts).
 */
import type { RouteRegistrar } from './api/types.js';
import type { PorticoConfig } from './config/index.js';
import { createDnsPlane, registerDnsApi } from './dns/index.js';
import type { EnumerateResult, HostRecord, ServiceRecord } from './dns/index.js';
import { createL4Plane, registerL4Api } from './l4/index.js';
import type { L4Description } from './l4/index.js';
import { createL7Plane } from './l7/plane.js';
import type { DataPlane, PlaneHealth } from './model/plane.js';
import type { SocketSource } from './net/listen.js';
import type { Logger } from './telemetry/log.js';
import type { Registry } from './telemetry/metrics.js';
import type { AutoCertificates, SessionKeyMaterial } from './workers/messages.js';

/** What a plane is created from, in whichever process it serves. */
export interface PlaneContext {
  config: PorticoConfig;
  logger: Logger;
  registry: Registry;
  /** Where listening sockets come from: bound here, or shared by the supervisor among the workers. */
  sockets?: SocketSource;
  /** The cluster CA's certificates for `tls.auto` hosts and the shared session keys, as they change. */
  keys: PlaneKeys;
  /** Whether this process probes the endpoints or follows the verdicts of the one that does; absent: probes. */
  health?: PlaneHealth;
}

export interface PlaneKeys {
  onAutoCertificates(cb: (certs: AutoCertificates) => void): void;
  onSessionKeys(cb: (keys: SessionKeyMaterial) => void): void;
}

/** Ask the plane (in this process or in a worker) one of its registered read-only questions. */
export type PlaneQuery = <T>(method: string, ...args: unknown[]) => Promise<T>;

export interface PlaneRegistration {
  name: string;
  create: (ctx: PlaneContext) => DataPlane | undefined;
  /** The plane's methods its api resources may call (a worker answers these and no others). */
  queries?: readonly string[];
  /** Register the plane's admin api resources (in the control process). */
  api?: (route: RouteRegistrar, query: PlaneQuery) => void;
}

export const PLANES: PlaneRegistration[] = [
  {
    name: 'l7',
    create: (ctx) => {
      const plane = createL7Plane({
        logger: ctx.logger,
        registry: ctx.registry,
        ...(ctx.sockets && { sockets: ctx.sockets }),
        ...(ctx.health && { health: ctx.health }),
        options: {
          ...ctx.config.l7,
          // PORTICO_ACCESS_LOG=off overrides the file (benchmarks, where peers log nothing either)
          accessLog: ctx.config.l7.accessLog && process.env.PORTICO_ACCESS_LOG !== 'off',
        },
      });
      // tls.auto entrypoints serve what the cluster CA issued, renewals included.
      ctx.keys.onAutoCertificates((certs) => plane.setAutoCertificates(certs));
      // The sticky secret and ticket keys, shared through the store.
      ctx.keys.onSessionKeys((k) => plane.setSessionKeys(decodeSessionKeys(k)));
      return plane;
    },
  },
  {
    // Before dns: a VIP's listener is programmed before its name is published (a race dcos-net had).
    name: 'l4',
    create: (ctx) =>
      createL4Plane({
        listenAddress: ctx.config.vips.listen,
        options: ctx.config.l4,
        logger: ctx.logger,
        registry: ctx.registry,
        ...(ctx.sockets && { sockets: ctx.sockets }),
        ...(ctx.health && { health: ctx.health }),
      }),
    queries: ['describe'],
    api: (route, query) => registerL4Api(route, { describe: () => query<L4Description>('describe') }),
  },
  {
    name: 'dns',
    create: (ctx) =>
      createDnsPlane({
        config: ctx.config.dns,
        logger: ctx.logger,
        registry: ctx.registry,
        ...(ctx.sockets && { sockets: ctx.sockets }),
      }),
    queries: ['hosts', 'services', 'enumerate', 'mesosConfig'],
    api: (route, query) =>
      registerDnsApi(route, {
        hosts: (name: string) => query<HostRecord[]>('hosts', name),
        services: (name: string) => query<ServiceRecord[]>('services', name),
        enumerate: () => query<EnumerateResult>('enumerate'),
        mesosConfig: () => query<Record<string, unknown>>('mesosConfig'),
      }),
  },
];

/**
 * Ask `plane` one of the questions its registration lists (`queries`), wherever it runs: the control
 * process's own planes and a worker's answer the api through this, and nothing else of a plane is reachable.
 */
export async function askPlane(reg: PlaneRegistration, plane: DataPlane, method: string, args: unknown[]): Promise<unknown> {
  if (!(reg.queries ?? []).includes(method)) throw new Error(`no query ${reg.name}.${method}`);
  const fn = (plane as unknown as Record<string, (...a: unknown[]) => unknown>)[method];
  if (typeof fn !== 'function') throw new Error(`plane ${reg.name} has no ${method}()`);
  return fn.apply(plane, args);
}

/** Session keys as they travel (base64) back to the Buffers the L7 plane takes. */
export function decodeSessionKeys(k: SessionKeyMaterial): Parameters<ReturnType<typeof createL7Plane>['setSessionKeys']>[0] {
  const b = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s, 'base64'));
  return {
    sticky: { current: Buffer.from(k.sticky.current, 'base64'), previous: b(k.sticky.previous) },
    tickets: { current: Buffer.from(k.tickets.current, 'base64'), previous: b(k.tickets.previous) },
  };
}

/** The inverse, for the control process: what the store's session keys look like on the wire. */
export function encodeSessionKeys(k: {
  sticky: { current: Buffer; previous?: Buffer | undefined };
  tickets: { current: Buffer; previous?: Buffer | undefined };
}): SessionKeyMaterial {
  const pair = (p: { current: Buffer; previous?: Buffer | undefined }) => ({
    current: p.current.toString('base64'),
    ...(p.previous && { previous: p.previous.toString('base64') }),
  });
  return { sticky: pair(k.sticky), tickets: pair(k.tickets) };
}
