/**
 * The data-plane contract. A data plane (L7, L4, DNS) is fed routing tables and nothing else: it never
 * reads a provider, a file or the store on its request path. Each one is registered by one entry in
 * `src/planes.ts` and fed the served tables of `src/aggregator/pipeline.ts`.
 */
import type { RoutingTable, TableChange } from './types.js';

export type PlaneState = 'starting' | 'serving' | 'error' | 'stopped';

export interface PlaneStatus {
  name: string;
  state: PlaneState;
  /** Addresses it listens on, `host:port` / `[v6]:port`, with the protocol: `tcp 127.0.0.1:8080`. */
  listeners: string[];
  /** Version of the table it serves now. */
  tableVersion: number;
  /** The last error (a listener that could not bind); kept until a later success clears it. */
  error?: string;
}

export interface DataPlane {
  readonly name: string;
  /**
   * Open listeners for `table` and start serving it. Rejects if the plane cannot serve at all
   * (e.g. its fixed listen address is taken); a listener of the table that cannot bind is an
   * `error` in status(), not a rejection, so one bad entrypoint does not stop the others.
   */
  start(table: RoutingTable): Promise<void>;
  /**
   * Swap in a new table: compile, then replace in one assignment. In-flight work finishes on the table it
   * started with. Listeners are opened or closed only when the table's listeners changed. Must not throw.
   * With `change` (what differs from the table it serves, when `change.from` is that table's version) a
   * plane patches what it compiled for the changed parts only; without, it compiles the whole table.
   */
  apply(table: RoutingTable, change?: TableChange): void;
  /** Stop accepting, let in-flight work finish for up to `drainMs`, then close everything. */
  stop(drainMs: number): Promise<void>;
  status(): PlaneStatus;
  /**
   * A plane with active health checks, in a worker of several (src/workers/): apply a verdict another
   * process's checks found, as a transition of its own checks would move the endpoint (a verdict for an
   * endpoint it does not check is ignored).
   */
  setHealthVerdict?(v: HealthVerdict): void;
  /** The DOWN verdicts of its checks now (UP is every endpoint's default), for a control that lost them. */
  healthVerdicts?(): HealthVerdict[];
}

/**
 * An active health check's verdict on one endpoint, as the workers of `portico up` share them (one worker
 * probes, the others take its verdicts): for a check per service (L7) `serviceId` names the service; a
 * check per endpoint, whatever services list it (L4), has none.
 */
export interface HealthVerdict {
  serviceId?: string;
  /** `address:port` / `[v6]:port`. */
  key: string;
  up: boolean;
  /** Why the last probe failed (`connect`, `status`, `timeout`, an errno), when down. */
  reason?: string;
}

/**
 * How a plane runs its active health checks. Absent (one process: `workers: 0`, tests), or `probe`: the
 * plane probes its endpoints itself. With several workers, one (the leader) runs them in `probe` mode and
 * `publish`es each up↔down transition its probes find; the others run them in `follow` mode: they keep
 * track of the endpoints the table asks to check (new ones start UP, as with probes) but never probe, and
 * take each verdict through `setHealthVerdict`.
 */
export interface PlaneHealth {
  mode: 'probe' | 'follow';
  /** Called with each up↔down transition the plane's probes find (`probe` mode). */
  publish?: (v: HealthVerdict) => void;
}
