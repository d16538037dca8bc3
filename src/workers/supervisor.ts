/**
 * `portico up`: the supervisor. It parses no config and holds no table, so there is little in it to fail;
 * it forks the control process (`portico __control`: config, store, feeds, aggregator, pki, admin api,
 * src/workers/control.ts) and, when the control asks, the data-plane workers (`portico __worker`,
 * src/workers/worker.ts), and:
 * - owns the listening sockets (src/net/listen.ts's SocketBroker): each worker asks for the sockets of its
 *   listeners and gets the one shared socket, so N workers accept on the same port (Node 20's `net` has no
 *   SO_REUSEPORT, and the cluster module's handle sharing cannot carry the raw libuv handles the planes
 *   use). The supervisor keeps its own copy of every socket, so while a worker is replaced connections wait
 *   in the kernel's backlog instead of being refused;
 * - relays control ⇄ worker messages without reading them (src/workers/messages.ts);
 * - replaces a worker that dies (the others keep their connections) and restarts a control that dies
 *   (the workers keep serving the last table meanwhile; the new control hands them its first table as a
 *   whole, which they patch in as a change);
 * - turns SIGTERM/SIGINT into a graceful stop (the control drains the workers, then leaves) and forwards
 *   SIGHUP (reload) to the control.
 *
 * This is HAProxy's master-worker and nginx's master shape. A start that fails (the control exits before
 * it is up: a refused config, a taken port) ends `portico up` with the control's exit code, as before.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SocketBroker } from '../net/listen.js';
import type { Logger } from '../telemetry/log.js';
import type { ControlToSupervisor, SupervisorToControl, SupervisorToWorker, WorkerInit, WorkerToSupervisor } from './messages.js';

const BIN = path.join(__dirname, '..', '..', 'bin', 'portico');

/**
 * PORTICO_CONTROL_NICE=N (1..19) runs the control process at a lower CPU priority than the workers: where
 * cores are shared, a config parse or a feed's resync then takes the CPU the data planes leave. Off by
 * default: measured on 2 shared cores (bench/churn.ts, nice 19) it kept more req/s during endpoint churn
 * (0.75x of quiet against 0.69x) and a Marathon resync (0.64x against 0.53x), but a change took up to
 * 281 ms to be served instead of 52 ms (p99), and a config reload did not gain. Linux keeps a nice value per
 * thread, so every thread of the process is set, at start and again once it is up (V8 and libuv start
 * threads of their own).
 */
const CONTROL_NICE = Math.max(0, Math.min(19, Number(process.env.PORTICO_CONTROL_NICE ?? 0) || 0));

function renice(pid: number | undefined, nice: number): void {
  if (pid === undefined || nice === 0) return;
  let tids: number[] = [pid];
  try {
    tids = readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    // not Linux, or gone: the process as a whole
  }
  for (const tid of tids) {
    try {
      os.setPriority(tid, nice);
    } catch {
      // gone meanwhile, or not permitted: it runs at the default priority
    }
  }
}

export interface SuperviseOptions {
  /** Arguments of `portico up` (flags), passed on to the control process. */
  argv: string[];
  logger: Logger;
}

interface Child {
  proc: ChildProcess;
  startedAt: number;
}

/** Restart delay after a crash: doubling from 100 ms up to 10 s while a process keeps dying young. */
class Backoff {
  private delay = 0;
  next(livedMs: number): number {
    this.delay = livedMs > 30_000 ? 0 : Math.min(10_000, Math.max(100, this.delay * 2));
    return this.delay;
  }
}

export function supervise(opts: SuperviseOptions): Promise<number> {
  return new Supervisor(opts).run();
}

class Supervisor {
  private readonly log: Logger;
  private readonly broker: SocketBroker;
  private control: Child | undefined;
  private everUp = false;
  private readonly controlBackoff = new Backoff();
  private readonly workers = new Map<number, Child>();
  private readonly workerBackoff = new Map<number, Backoff>();
  private init: WorkerInit | undefined;
  private count = 0;
  private stopping: string | undefined;
  private exitCode = 0;
  private done: ((code: number) => void) | undefined;

  constructor(private readonly opts: SuperviseOptions) {
    this.log = opts.logger.child({ component: 'supervisor' });
    this.broker = new SocketBroker({ logger: opts.logger });
  }

  run(): Promise<number> {
    return new Promise<number>((resolve) => {
      this.done = resolve;
      const stop = (signal: string) => this.stop(signal);
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', () => this.toControl({ t: 'reload' }));
      this.startControl();
    });
  }

  private env(): NodeJS.ProcessEnv {
    // Children run what this process runs: the sources (tests, `PORTICO_FROM_SOURCE=1`) or the build.
    return { ...process.env, PORTICO_SUPERVISED: '1', ...(__filename.endsWith('.ts') && { PORTICO_FROM_SOURCE: '1' }) };
  }

  private startControl(): void {
    const proc = fork(BIN, ['__control', ...this.opts.argv], { env: this.env(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const child: Child = { proc, startedAt: Date.now() };
    this.control = child;
    renice(proc.pid, CONTROL_NICE);
    proc.on('message', (msg: ControlToSupervisor) => this.fromControl(msg));
    proc.on('error', (err) => this.log.error({ err: err.message }, 'control process error'));
    proc.on('exit', (code, signal) => this.controlExited(child, code, signal));
  }

  private controlExited(child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.control !== child) return;
    this.control = undefined;
    if (this.stopping) {
      this.exitCode = code ?? 1;
      this.stopWorkers(0);
      return this.maybeDone();
    }
    if (!this.everUp) {
      // A failed start (refused config, taken port): `portico up` fails with it; nothing to keep serving.
      this.exitCode = code ?? 1;
      this.stopping = 'start failed';
      this.stopWorkers(0);
      return this.maybeDone();
    }
    const delay = this.controlBackoff.next(Date.now() - child.startedAt);
    this.log.error(
      { code, signal, restartInMs: delay, workers: this.workers.size },
      'control process exited; restarting it (the data-plane workers keep serving the last table)',
    );
    setTimeout(() => {
      if (!this.stopping) this.startControl();
    }, delay).unref();
  }

  private fromControl(msg: ControlToSupervisor): void {
    switch (msg.t) {
      case 'workers': {
        this.init = msg.init;
        this.count = Math.max(this.count, msg.count); // fewer workers takes a restart
        for (let w = 0; w < this.count; w++) {
          const have = this.workers.get(w);
          if (have) this.toControl({ t: 'worker-up', w, pid: have.proc.pid ?? 0 });
          else this.startWorker(w);
        }
        return;
      }
      case 'up':
        this.everUp = true;
        renice(this.control?.proc.pid, CONTROL_NICE);
        return;
      case 'to-workers':
        for (const [, child] of this.workers) this.sendWorker(child, msg.msg);
        return;
      case 'to-worker': {
        const child = this.workers.get(msg.w);
        if (child) this.sendWorker(child, msg.msg);
        return;
      }
      case 'to-workers-text':
        for (const [, child] of this.workers) this.sendWorker(child, { t: 'text', text: msg.text });
        return;
      case 'to-worker-text': {
        const child = this.workers.get(msg.w);
        if (child) this.sendWorker(child, { t: 'text', text: msg.text });
        return;
      }
      case 'stopped':
        this.stopping ??= 'control stopped';
        this.exitCode = msg.code;
        return;
    }
  }

  private startWorker(w: number): void {
    if (!this.init || this.stopping) return;
    // UV_TCP_SINGLE_ACCEPT: a worker accepts one connection per wakeup and lets the others take the next,
    // so the kernel's wakeups spread connections over the workers instead of the busiest one taking them all.
    const env = { UV_TCP_SINGLE_ACCEPT: '1', ...this.env() };
    const proc = fork(BIN, ['__worker'], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const child: Child = { proc, startedAt: Date.now() };
    this.workers.set(w, child);
    this.sendWorker(child, { t: 'init', w, init: this.init });
    proc.on('message', (msg: WorkerToSupervisor | { t: string }) => {
      if (msg.t === 'to-control')
        return this.toControl({ t: 'from-worker', w, msg: (msg as WorkerToSupervisor & { t: 'to-control' }).msg });
      // Socket requests; the broker ignores anything else.
      this.broker.handle(w, msg, (reply, h) => {
        if (proc.connected) proc.send(reply, h as never);
      });
    });
    proc.on('error', (err) => this.log.error({ err: err.message, worker: w }, 'worker process error'));
    proc.on('exit', (code, signal) => this.workerExited(w, child, code, signal));
    if (proc.pid !== undefined) this.toControl({ t: 'worker-up', w, pid: proc.pid });
  }

  private workerExited(w: number, child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.workers.get(w) !== child) return;
    this.workers.delete(w);
    this.toControl({ t: 'worker-exit', w, pid: child.proc.pid ?? 0, code, signal });
    // It holds nothing now; the sockets it held stay open here: its replacement gets the same ones, and
    // connections wait in the backlog meanwhile.
    this.broker.forget(w);
    if (this.stopping) return this.maybeDone();
    const backoff = this.workerBackoff.get(w) ?? new Backoff();
    this.workerBackoff.set(w, backoff);
    const delay = backoff.next(Date.now() - child.startedAt);
    this.log.error(
      { worker: w, workerPid: child.proc.pid, code, signal, restartInMs: delay },
      'data-plane worker exited; starting another',
    );
    setTimeout(() => {
      if (!this.stopping && !this.workers.has(w) && w < this.count) this.startWorker(w);
    }, delay).unref();
  }

  private stop(signal: string): void {
    if (this.stopping) {
      if (signal === 'SIGINT' || signal === 'SIGTERM') this.log.warn({ signal }, 'already stopping');
      return;
    }
    this.stopping = signal;
    this.log.info({ signal }, 'signal received');
    if (this.control?.proc.connected) this.toControl({ t: 'stop', signal });
    else {
      this.stopWorkers(10_000);
      this.maybeDone();
    }
  }

  private stopWorkers(drainMs: number): void {
    for (const [, child] of this.workers) this.sendWorker(child, { t: 'stop', drainMs });
  }

  private maybeDone(): void {
    if (!this.stopping || this.control || this.workers.size > 0) return;
    this.broker.close();
    this.done?.(this.exitCode);
    this.done = undefined;
  }

  private toControl(msg: SupervisorToControl): void {
    const c = this.control?.proc;
    if (c?.connected) c.send(msg);
  }

  private sendWorker(child: Child, msg: SupervisorToWorker): void {
    if (child.proc.connected) child.proc.send(msg);
  }
}
