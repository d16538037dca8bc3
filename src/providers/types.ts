/**
 * The provider contract: a provider watches one source (a file, Consul, Marathon, the store) and sends
 * the aggregator what it knows whenever that changes: a complete Snapshot, or — when the sink takes them
 * and the provider knows what changed — a SnapshotDelta. It never talks to a data plane.
 */
import type { Snapshot, SnapshotDelta } from '../model/types.js';

export type ProviderState = 'starting' | 'ok' | 'degraded' | 'error' | 'stopped';

export interface ProviderStatus {
  name: string;
  /** Higher wins a conflict (two providers claiming one host+path, one VIP, one DNS name). */
  priority: number;
  state: ProviderState;
  /** ISO time of the last snapshot sent. */
  lastUpdate?: string;
  /** The last error (a refused config file, a lost connection); kept until a later success clears it. */
  lastError?: string;
  lastErrorAt?: string;
  /** Provider-specific facts: the file watched, the upstream URL, the last index seen. */
  details?: Record<string, unknown>;
}

export interface SnapshotSink {
  /** Everything the provider knows now. */
  (snapshot: Snapshot): void;
  /** What changed since what was sent last (a snapshot or a change). A sink without it takes snapshots only. */
  change?: (delta: SnapshotDelta) => void;
}

export interface Provider {
  readonly name: string;
  readonly priority: number;
  /**
   * Start watching. Resolves once the first snapshot has been sent to `sink` (or the first attempt
   * failed and was recorded in status(): a provider that cannot read its source at start keeps
   * retrying, and the appliance serves what the other providers know).
   */
  start(sink: SnapshotSink): Promise<void>;
  /**
   * Read the source again now (what SIGHUP does), for providers whose source can be re-read on demand.
   * Resolves true when what was read was accepted, false when it was refused (the last good state serves).
   */
  reload?(): Promise<boolean>;
  /** Stop watching and release files/sockets. Idempotent. */
  stop(): Promise<void>;
  status(): ProviderStatus;
}
