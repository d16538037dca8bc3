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
}
