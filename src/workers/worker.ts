/**
 * A data-plane worker (`portico __worker`, forked by the supervisor, src/workers/supervisor.ts): the L7, L4
 * and DNS planes of src/planes.ts and nothing else. It parses no config file, reads no feed and no store:
 * it gets the control's config once (`init`), then served tables — the first whole, then compact changes
 * (src/workers/wire.ts) — and the cluster CA's certificates, and answers with the version it applied.
 * Its listening sockets come from the supervisor (src/net/listen.ts), shared with the other workers.
 *
 * Work here is what serving costs: a table change is decoded and patched in (milliseconds at cluster
 * size); parsing, validating, merging and compiling a change happened in the control process.
 *
 * Active health checks: worker 0 (the leader) probes and sends its planes' up↔down transitions to the
 * control, batched per tick; every other worker's planes never probe and take the verdicts the control
 * hands on, in order with the tables (src/workers/messages.ts).
 */
import { readFileSync } from 'node:fs';
import type { DataPlane, HealthVerdict, PlaneHealth } from '../model/plane.js';
import type { RoutingTable } from '../model/types.js';
import { BrokeredSockets } from '../net/listen.js';
import { askPlane, PLANES, type PlaneContext, type PlaneRegistration } from '../planes.js';
import { createLogger, type Logger } from '../telemetry/log.js';
import { createRegistry, metric, prom } from '../telemetry/metrics.js';
import { StartClock } from '../telemetry/startup.js';
import {
  LEADER_WORKER,
  NO_TABLE_YET,
  type AutoCertificates,
  type FromWorker,
  type PlaneVerdict,
  type SessionKeyMaterial,
  type SupervisorToWorker,
  type WorkerInit,
} from './messages.js';
import { decodeTable, type TableMessage } from './wire.js';

export interface WorkerOptions {
  /** Planes to create (default: src/planes.ts). */
  planes?: PlaneRegistration[];
}

/** Run as a worker until told to stop or the supervisor goes away; resolves with the exit code. */
export function runWorker(opts: WorkerOptions = {}): Promise<number> {
  const clock = new StartClock();
  clock.mark('modules');
  const send = process.send?.bind(process);
  if (!send) return Promise.resolve(2);
  // Ctrl-C in a terminal signals the whole process group: the supervisor decides, not each worker.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  return new Promise<number>((resolve) => {
    let worker: Worker | undefined;
    process.on('message', (msg: SupervisorToWorker) => {
      if (!msg || typeof msg !== 'object') return;
      if (msg.t === 'init') {
        if (!worker) worker = new Worker(msg.w, msg.init, (m) => send({ t: 'to-control', msg: m }), opts, resolve, clock);
        return;
      }
      // A whole table comes as JSON text (relayed by the supervisor) or as a file the control wrote.
      if (msg.t === 'text' || msg.t === 'table-file') {
        clock.mark('received');
        let parsed: TableMessage;
        try {
          parsed = JSON.parse(msg.t === 'text' ? msg.text : readFileSync(msg.file, 'utf8')) as TableMessage;
        } catch (err) {
          // Text: cannot happen (the control serialised it). A file: gone (the control wrote two newer ones
          // since) or unreadable. Either way, ask for the table as it is now.
          worker?.wantTable(msg.t === 'text' ? 'a table message that does not parse' : `table file ${msg.file}: ${(err as Error).message}`);
          return;
        }
        clock.mark('parsed');
        worker?.receive(parsed);
        return;
      }
      worker?.receive(msg);
    });
    // The supervisor is gone (killed): nothing would replace us or hand us tables; drain and leave, so the
    // listening sockets are free for the next `portico up`.
    process.once('disconnect', () => {
      if (!worker) return resolve(0);
      worker.stop(2_000, 'supervisor gone');
    });
  });
}

class Worker {
  private readonly log: Logger;
  private readonly planes: Array<{ reg: PlaneRegistration; plane: DataPlane }> = [];
  private table: RoutingTable | undefined;
  private started = false;
  /** A table message arrived (it may still be starting the planes). */
  private received = false;
  /** Messages are handled one at a time, in order (a plane start is asynchronous). */
  private queue: Promise<void> = Promise.resolve();
  private readonly registry = createRegistry();
  private certs: ((c: AutoCertificates) => void)[] = [];
  private keys: ((k: SessionKeyMaterial) => void)[] = [];
  private stopping = false;
  /** This worker runs the active health checks (the others take its verdicts). */
  private readonly leader: boolean;
  /** The leader's transitions not sent yet (sent once per tick). */
  private outbox: PlaneVerdict[] = [];
  /** Decode + apply of each table here: the data-plane CPU a change costs (one series per worker, summed on scrape). */
  private readonly applySeconds = metric(
    this.registry,
    'portico_worker_table_apply_seconds',
    () =>
      new prom.Histogram({
        name: 'portico_worker_table_apply_seconds',
        help: 'Time a data-plane worker spent decoding and applying one table (whole or change), by kind',
        labelNames: ['kind'],
        buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1, 5],
        registers: [this.registry],
      }),
  );

  constructor(
    private readonly w: number,
    init: WorkerInit,
    private readonly toControl: (msg: FromWorker) => void,
    opts: WorkerOptions,
    private readonly exit: (code: number) => void,
    private readonly clock: StartClock,
  ) {
    this.log = createLogger({ level: init.logLevel }).child({ worker: w });
    this.leader = w === LEADER_WORKER;
    const ctx: PlaneContext = {
      config: init.config,
      logger: this.log,
      registry: this.registry,
      sockets: new BrokeredSockets(process as unknown as ConstructorParameters<typeof BrokeredSockets>[0]),
      keys: {
        onAutoCertificates: (cb) => this.certs.push(cb),
        onSessionKeys: (cb) => this.keys.push(cb),
      },
    };
    for (const reg of opts.planes ?? PLANES) {
      const health: PlaneHealth = this.leader
        ? { mode: 'probe', publish: (v: HealthVerdict) => this.publish({ plane: reg.name, ...v }) }
        : { mode: 'follow' };
      const plane = reg.create({ ...ctx, health });
      if (plane) this.planes.push({ reg, plane });
    }
    process.on('uncaughtException', (err) => {
      this.log.fatal({ err }, 'worker: uncaught exception; exiting (the supervisor starts another)');
      process.exit(70);
    });
    clock.mark('init');
    this.log.info(
      { planes: this.planes.map((p) => p.reg.name), health: this.leader ? 'probe' : 'follow' },
      'worker: waiting for the first table',
    );
    this.askUntilServed();
  }

  /**
   * The control sends a worker the whole table when it hears the worker started; should that message not
   * arrive (a suite under load once left two workers waiting), ask again every few seconds until a table
   * comes. Never on a path that serves: before the first table there is nothing to serve.
   */
  private askUntilServed(): void {
    const timer = setTimeout(() => {
      // A table in hand (its planes still starting: seconds at cluster size on a busy machine) is not asked
      // for again: each answer is the whole table once more, to encode, relay and decode.
      if (this.table || this.received || this.stopping) return;
      this.log.warn({ worker: this.w }, 'worker: no table yet; asking the control for it');
      this.toControl({ t: 'want-table', have: 0, reason: NO_TABLE_YET });
      this.askUntilServed();
    }, 5_000);
    timer.unref();
  }

  /** Ask the control for the whole table, as the worker has it now (`reason`: why, for its log). */
  wantTable(reason: string): void {
    this.received = true; // the answer is on its way: no "no table yet" ask meanwhile
    this.toControl({ t: 'want-table', have: this.table?.version ?? 0, reason });
  }

  receive(msg: Exclude<SupervisorToWorker, { t: 'init' | 'table-file' }>): void {
    switch (msg.t) {
      case 'table':
        this.received = true;
        this.queue = this.queue.then(() => this.onTable(msg)).catch((err) => this.log.error({ err }, 'worker: table failed'));
        return;
      case 'health':
        // In order with the tables: a verdict applies to the table sent before it (or waits for the first).
        this.queue = this.queue
          .then(() => this.onVerdicts(msg.verdicts))
          .catch((err) => this.log.error({ err }, 'worker: verdicts failed'));
        return;
      case 'certs':
        for (const cb of this.certs) cb(msg.certs);
        return;
      case 'session-keys':
        for (const cb of this.keys) cb(msg.keys);
        return;
      case 'rpc':
        void this.rpc(msg.id, msg.plane, msg.method, msg.args);
        return;
      case 'metrics':
        this.registry.getMetricsAsJSON().then(
          (json) => this.toControl({ t: 'metrics-ok', id: msg.id, json }),
          (err: Error) => this.toControl({ t: 'rpc-err', id: msg.id, message: err.message }),
        );
        return;
      case 'stop':
        this.stop(msg.drainMs, 'told to stop');
        return;
    }
  }

  private async onTable(msg: TableMessage): Promise<void> {
    const began = process.hrtime.bigint();
    let decoded: ReturnType<typeof decodeTable>;
    try {
      decoded = decodeTable(this.table, msg);
    } catch (err) {
      // A change from a version we do not serve: ask for the whole table (the control sends it at once).
      this.toControl({ t: 'want-table', have: this.table?.version ?? 0, reason: (err as Error).message });
      return;
    }
    const { table, change } = decoded;
    if (!this.started) {
      this.clock.mark('decoded');
      for (const { reg, plane } of this.planes) {
        const failed = await plane.start(table).then(
          () => undefined,
          (err: Error) => err,
        );
        this.clock.mark(`plane.${reg.name}`);
        if (failed) {
          this.log.error({ err: failed, plane: reg.name }, 'worker: plane did not start');
          this.toControl({ t: 'start-failed', plane: reg.name, message: failed.message });
          return;
        }
      }
      this.started = true;
      this.log.info({ version: table.version, ...this.clock.fields() }, 'worker: serving');
    } else {
      for (const { reg, plane } of this.planes) {
        try {
          plane.apply(table, change);
        } catch (err) {
          this.log.error({ err, plane: reg.name, version: table.version }, 'plane apply threw; it keeps its previous table');
        }
      }
    }
    const resync = msg.whole && this.table !== undefined;
    this.table = table;
    // A whole table while serving one: a control that started again (it knows no verdicts) or asked to
    // resend. The leader hands it the DOWN verdicts it holds.
    if (resync && this.leader)
      for (const { reg, plane } of this.planes) for (const v of plane.healthVerdicts?.() ?? []) this.publish({ plane: reg.name, ...v });
    const kind = msg.whole ? 'whole' : 'change';
    this.applySeconds.observe({ kind }, Number(process.hrtime.bigint() - began) / 1e9);
    // Transitions found before this table go first: the control tells them from ones about its checks by that.
    this.flushVerdicts();
    this.toControl({ t: 'applied', version: table.version, planes: this.planes.map((p) => p.plane.status()) });
  }

  private onVerdicts(verdicts: PlaneVerdict[]): void {
    for (const { plane: name, ...v } of verdicts) {
      const entry = this.planes.find((p) => p.reg.name === name);
      try {
        entry?.plane.setHealthVerdict?.(v);
      } catch (err) {
        this.log.error({ err, plane: name }, 'worker: a health verdict was not applied');
      }
    }
  }

  /** A transition the leader's probes found: to the control, with the others of this tick. */
  private publish(v: PlaneVerdict): void {
    this.outbox.push(v);
    if (this.outbox.length === 1) setImmediate(() => this.flushVerdicts());
  }

  private flushVerdicts(): void {
    if (this.outbox.length === 0) return;
    const verdicts = this.outbox;
    this.outbox = [];
    this.toControl({ t: 'health', verdicts });
  }

  private async rpc(id: number, name: string, method: string, args: unknown[]): Promise<void> {
    const entry = this.planes.find((p) => p.reg.name === name);
    try {
      if (!entry) throw new Error(`no plane ${name} in this worker`);
      this.toControl({ t: 'rpc-ok', id, value: await askPlane(entry.reg, entry.plane, method, args) });
    } catch (err) {
      this.toControl({ t: 'rpc-err', id, message: (err as Error).message });
    }
  }

  stop(drainMs: number, why: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ drainMs, why, worker: this.w }, 'worker: draining');
    void this.queue
      .then(() => Promise.all([...this.planes].reverse().map(({ plane }) => plane.stop(drainMs).catch(() => undefined))))
      .then(() => this.exit(0));
  }
}
