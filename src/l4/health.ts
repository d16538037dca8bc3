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
 *
 * In `follow` mode (a data-plane worker other than the one that probes, src/workers/) the checker keeps the
 * same targets but never probes: verdicts come from `setVerdict` and set the backend's `checkUp` as a probe
 * would. In `probe` mode `setVerdict` seeds a target (a restarted prober is handed the verdicts found before
 * it: a DOWN endpoint stays DOWN until `rise` successes). Verdicts given before the first `update` wait for
 * the targets they name.
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
  /** The same targets by endpoint key (verdicts name endpoints by key). */
  private readonly byKey = new Map<string, Target>();
  private stopped = false;
  /** Verdicts given before the first `update`, by endpoint key: applied to the targets it creates. */
  private seeds: Map<string, { up: boolean; reason: string | undefined }> | undefined = new Map();
  private readonly totals = { checksTotal: 0, failuresTotal: 0 };

  constructor(
    private readonly onTransition: (t: HealthTransition) => void,
    private readonly probe: ConnectProbe = tcpConnectProbe,
    /** `probe`: probe every target; `follow`: never probe, take verdicts from `setVerdict`. */
    readonly mode: 'probe' | 'follow' = 'probe',
  ) {}

  /**
   * Check exactly these backends with these parameters from now on. Backends no longer listed lose their
   * verdict. Returns the backends that verdicts given before the first update took (their pools need a
   * rebuild); always none after it.
   */
  update(wanted: ReadonlyMap<Backend, CheckParams>): Backend[] {
    if (this.stopped) return [];
    for (const b of [...this.targets.keys()]) if (!wanted.has(b)) this.set(b, undefined);
    const seeds = this.seeds;
    this.seeds = undefined;
    const seeded: Backend[] = [];
    for (const [b, params] of wanted) {
      const fresh = !this.targets.has(b);
      this.set(b, params);
      const seed = fresh ? seeds?.get(b.key) : undefined;
      if (seed && b.checkUp !== seed.up) {
        b.checkUp = seed.up;
        if (!seed.up) (this.targets.get(b) as Target).lastError = seed.reason;
        seeded.push(b);
      }
    }
    return seeded;
  }

  /**
   * Take a verdict found elsewhere for the endpoint `key`: its backend's `checkUp` takes it and its probes
   * are counted afresh from it (in `probe` mode a DOWN one needs `rise` successes to come back). Returns the
   * backend when the verdict changed it (its pools need a rebuild), else undefined; `onTransition` is not
   * called (it reports what probes find). A verdict for an endpoint not checked is ignored, except before
   * the first `update`, which applies it if it checks the endpoint.
   */
  setVerdict(key: string, up: boolean, reason?: string): Backend | undefined {
    if (this.stopped) return undefined;
    const t = this.byKey.get(key);
    if (!t) {
      this.seeds?.set(key, { up, reason });
      return undefined;
    }
    const b = t.backend;
    if (b.checkUp === up) return undefined;
    t.successes = 0;
    t.failures = 0;
    t.lastError = up ? undefined : reason;
    b.checkUp = up;
    return b;
  }

  /** The endpoints found DOWN now, with the last error. */
  down(): Array<{ key: string; reason: string | undefined }> {
    const out: Array<{ key: string; reason: string | undefined }> = [];
    for (const t of this.targets.values()) if (t.backend.checkUp === false) out.push({ key: t.backend.key, reason: t.lastError });
    return out;
  }

  /** Probes completed and failed so far (monotonic). */
  stats(): { checksTotal: number; failuresTotal: number } {
    return { ...this.totals };
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
      this.byKey.delete(b.key);
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
    this.byKey.set(b.key, nt);
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
    this.byKey.clear();
  }

  private cancel(t: Target): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    t.inFlight?.cancel();
    t.inFlight = undefined;
  }

  private schedule(t: Target, delayMs: number): void {
    if (this.mode === 'follow') return; // its verdicts come from setVerdict
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
    this.totals.checksTotal++;
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
      this.totals.failuresTotal++;
      if (b.checkUp !== false && t.failures >= t.params.fall) {
        b.checkUp = false;
        const tr: HealthTransition = { backend: b, up: false };
        if (error !== undefined) tr.error = error;
        this.onTransition(tr);
      }
    }
  }
}
