/**
 * What the three kinds of process of `portico up` say to each other over the fork IPC channels (JSON):
 *
 *   supervisor ── forks, owns the listening sockets, relays, restarts
 *     ├── control   config, store, feeds, aggregator, stages, pki, admin api      (src/main.ts up())
 *     └── worker ×N the data planes (l7, l4, dns), fed tables and certificates   (src/workers/worker.ts)
 *
 * The supervisor never parses a table: it relays control ⇄ worker messages as they are. Socket requests
 * (src/net/listen.ts) go worker → supervisor and are answered with the socket itself.
 *
 * Active health checks run in one worker, the leader (worker 0; a replacement keeps the number): its
 * planes probe, and each up↔down transition goes to the control (`health`, batched per tick), which keeps
 * the DOWN verdicts of the table's endpoints and hands each verdict to every other worker; their planes
 * never probe and take the leader's verdicts. A worker that starts is handed the DOWN verdicts before its
 * first table, so it serves them DOWN from its first request (a replacement leader probes on from there).
 */
import type { HealthVerdict, PlaneStatus } from '../model/plane.js';
import type { PorticoConfig } from '../config/index.js';
import type { TableMessage } from './wire.js';

/** The `want-table` reason of a worker that has had no table message since it started. */
export const NO_TABLE_YET = 'no table since start';

/** What a worker needs to create its planes: the control's config (engine settings, listeners). */
export interface WorkerInit {
  config: PorticoConfig;
  /** Log level of the control, so one PORTICO_LOG_LEVEL governs every process. */
  logLevel: string;
}

/** The worker whose planes run the active health checks; the others take its verdicts. */
export const LEADER_WORKER = 0;

/** A health verdict (src/model/plane.ts) and the plane whose check found it. */
export type PlaneVerdict = HealthVerdict & { plane: string };

export type AutoCertificates = ReadonlyArray<{ serial: string; certPem: string; chainPem: string; keyPem: string }>;

/** The shared sticky secret and TLS ticket keys, base64 (IPC is JSON). Never logged. */
export interface SessionKeyMaterial {
  sticky: { current: string; previous?: string };
  tickets: { current: string; previous?: string };
}

/** Control ⇄ worker, relayed by the supervisor unchanged. */
export type ToWorker =
  | TableMessage
  /** A whole table the control wrote to `file` (JSON of a TableMessage), for the worker to read. */
  | { t: 'table-file'; file: string; version: number }
  | { t: 'certs'; certs: AutoCertificates }
  | { t: 'session-keys'; keys: SessionKeyMaterial }
  | { t: 'rpc'; id: number; plane: string; method: string; args: unknown[] }
  | { t: 'metrics'; id: number }
  /** The leader's verdicts: as it finds them (to the other workers), and the DOWN ones to a worker that starts. */
  | { t: 'health'; verdicts: PlaneVerdict[] }
  | { t: 'stop'; drainMs: number };

export type FromWorker =
  | { t: 'applied'; version: number; planes: PlaneStatus[] }
  /** A plane could not start at all (its fixed listen address is taken): `portico up` fails, as it would in one process. */
  | { t: 'start-failed'; plane: string; message: string }
  /**
   * The worker cannot use a change (it serves another version, or decoding failed): send a whole table.
   * `reason` NO_TABLE_YET: none has arrived since the worker started (a safety net, see worker.ts).
   */
  | { t: 'want-table'; have: number; reason: string }
  | { t: 'rpc-ok'; id: number; value: unknown }
  | { t: 'rpc-err'; id: number; message: string }
  | { t: 'metrics-ok'; id: number; json: unknown }
  /** The leader's up↔down transitions (batched per tick), or, after the control restarted, its DOWN verdicts. */
  | { t: 'health'; verdicts: PlaneVerdict[] };

/** Control → supervisor. */
export type ControlToSupervisor =
  | { t: 'workers'; count: number; init: WorkerInit }
  | { t: 'to-workers'; msg: ToWorker }
  | { t: 'to-worker'; w: number; msg: ToWorker }
  /** A ToWorker message as JSON text (whole tables: relayed as one string, not re-serialised per worker). */
  | { t: 'to-workers-text'; text: string }
  | { t: 'to-worker-text'; w: number; text: string }
  /** up() resolved: from now on an exit of the control is a crash to restart, not a failed start. */
  | { t: 'up' }
  /** The control has stopped its parts (after a `stop`); the supervisor stops the workers and exits. */
  | { t: 'stopped'; code: number };

/** Supervisor → control. */
export type SupervisorToControl =
  | { t: 'worker-up'; w: number; pid: number }
  | { t: 'worker-exit'; w: number; pid: number; code: number | null; signal: string | null }
  | { t: 'from-worker'; w: number; msg: FromWorker }
  | { t: 'stop'; signal: string }
  | { t: 'reload' };

/** Supervisor → worker (besides relayed ToWorker messages and socket answers). */
export type SupervisorToWorker = { t: 'init'; w: number; init: WorkerInit } | { t: 'text'; text: string } | ToWorker;

/** Worker → supervisor (besides socket requests). */
export type WorkerToSupervisor = { t: 'to-control'; msg: FromWorker } | { t: 'ready' };
