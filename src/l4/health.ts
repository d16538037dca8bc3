/**
 * Active TCP connect checks for L4 endpoints: one check per `address:port`, however many services list it.
 *
 * A check is a connect that must complete within `timeoutMs`; `fall` failures in a row mark the endpoint
 * down (it leaves the Maglev table), `rise` successes in a row mark it up again. Before the first verdict
 * an endpoint is served (like `unknown` in the table). Transitions are reported once each, never every
 * probe (`onTransition`). Checks of one endpoint are spread by a random start and ±10 % jitter so a
 * thousand endpoints are not probed in one burst.
 *
 * The probe is injectable (tests), and every timer is unref'd: checks never keep the process alive.
 */
import net from 'node:net';
import type { Backend } from './pool.js';

export interface CheckParams {
  intervalMs: number;
  timeoutMs: number;
  rise: number;
  fall: number;
}

/** Probe `address:port`; call `done(ok, error)` exactly once unless cancelled. */
export type ConnectProbe = (
  address: string,
  port: number,
  timeoutMs: number,
  done: (ok: boolean, error?: string) => void,
) => { cancel(): void };

export const tcpConnectProbe: ConnectProbe = (address, port, timeoutMs, done) => {
  let finished = false;
  const socket = net.connect({ host: address, port });
  const finish = (ok: boolean, error?: string): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeAllListeners('connect');
    socket.on('error', () => {});
    socket.destroy();
    done(ok, error);
  };
  const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
  timer.unref();
  socket.once('connect', () => finish(true));
  socket.once('error', (err: NodeJS.ErrnoException) => finish(false, err.code ?? err.message));
  return {
    cancel: () => {
      finished = true;
      clearTimeout(timer);
      socket.removeAllListeners('connect');
      socket.on('error', () => {});
      socket.destroy();
    },
  };
};

interface Target {
  backend: Backend;
  params: CheckParams;
  successes: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  inFlight: { cancel(): void } | undefined;
  lastError: string | undefined;
}

export interface HealthTransition {
  backend: Backend;
  up: boolean;
  /** The last probe's error (`ECONNREFUSED`, `timeout`) when it went down. */
  error?: string;
}

export class ActiveChecker {
  private readonly targets = new Map<Backend, Target>();
  private stopped = false;

  constructor(
    private readonly onTransition: (t: HealthTransition) => void,
    private readonly probe: ConnectProbe = tcpConnectProbe,
  ) {}

  /** Check exactly these backends with these parameters from now on. Backends no longer listed lose their verdict. */
  update(wanted: ReadonlyMap<Backend, CheckParams>): void {
    if (this.stopped) return;
    for (const b of [...this.targets.keys()]) if (!wanted.has(b)) this.set(b, undefined);
    for (const [b, params] of wanted) this.set(b, params);
  }

  /**
   * Check `b` with `params` from now on (its checks so far, and its verdict, are kept), or, with undefined,
   * stop checking it: it loses its verdict. Touches no other backend.
   */
  set(b: Backend, params: CheckParams | undefined): void {
    if (this.stopped) return;
    const t = this.targets.get(b);
    if (!params) {
      if (!t) return;
      this.cancel(t);
      this.targets.delete(b);
      b.checkUp = undefined;
      return;
    }
    if (t) {
      const changed = t.params.intervalMs !== params.intervalMs;
      t.params = params;
      if (changed && !t.inFlight) this.schedule(t, Math.random() * Math.min(params.intervalMs, 1_000));
      return;
    }
    const nt: Target = { backend: b, params, successes: 0, failures: 0, timer: undefined, inFlight: undefined, lastError: undefined };
    this.targets.set(b, nt);
    // First check soon (a new endpoint's verdict matters), spread over at most a second.
    this.schedule(nt, Math.random() * Math.min(params.intervalMs, 1_000));
  }

  /** The parameters `b` is checked with now; undefined when it is not checked. */
  paramsOf(b: Backend): CheckParams | undefined {
    return this.targets.get(b)?.params;
  }

  /** The backends checked now. */
  checked(): IterableIterator<Backend> {
    return this.targets.keys();
  }

  get size(): number {
    return this.targets.size;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.targets.values()) this.cancel(t);
    this.targets.clear();
  }

  private cancel(t: Target): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    t.inFlight?.cancel();
    t.inFlight = undefined;
  }

  private schedule(t: Target, delayMs: number): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => this.run(t), delayMs);
    t.timer.unref();
  }

  private run(t: Target): void {
    t.timer = undefined;
    if (this.stopped || this.targets.get(t.backend) !== t) return;
    const b = t.backend;
    t.inFlight = this.probe(b.address, b.port, t.params.timeoutMs, (ok, error) => {
      t.inFlight = undefined;
      if (this.stopped || this.targets.get(b) !== t) return;
      this.record(t, ok, error);
      const jitter = 1 + (Math.random() - 0.5) * 0.2;
      this.schedule(t, t.params.intervalMs * jitter);
    });
  }

  private record(t: Target, ok: boolean, error: string | undefined): void {
    const b = t.backend;
    if (ok) {
      t.successes++;
      t.failures = 0;
      // From "no verdict" one success is enough (it was served already); from down, `rise` in a row.
      if (b.checkUp !== true && (b.checkUp === undefined || t.successes >= t.params.rise)) {
        b.checkUp = true;
        this.onTransition({ backend: b, up: true });
      }
    } else {
      t.failures++;
      t.successes = 0;
      t.lastError = error;
      if (b.checkUp !== false && t.failures >= t.params.fall) {
        b.checkUp = false;
        const tr: HealthTransition = { backend: b, up: false };
        if (error !== undefined) tr.error = error;
        this.onTransition(tr);
      }
    }
  }
}
