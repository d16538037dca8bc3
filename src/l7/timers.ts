/* eslint-disable @typescript-eslint/no-explicit-any -- the wheel holds timers of every argument type */
/**
 * Coarse timers for the hot path (after undici's util/timers): one unref'd interval ticks every
 * `resolutionMs` and fires every armed timer whose deadline has passed. Arming, refreshing and clearing
 * are O(1) field writes — no setTimeout/clearTimeout per request, no closure per request (the callback
 * and its argument are fixed when the timer is made, once per connection).
 *
 * Precision is ± one tick: fine for header, idle and response timeouts measured in seconds, and the tick
 * can be made small in tests.
 */
export class CoarseTimer<T = unknown> {
  /** ms since epoch when it fires; 0 = disarmed. */
  deadline = 0;
  delayMs = 0;
  constructor(
    readonly wheel: TimerWheel,
    readonly onTimeout: (arg: T) => void,
    readonly arg: T,
  ) {}

  /** Arm (or re-arm) to fire `delayMs` from now. A delay ≤ 0 disarms. */
  start(delayMs: number): void {
    this.delayMs = delayMs;
    if (delayMs <= 0) {
      this.clear();
      return;
    }
    // Date.now() (tens of ns), not the wheel's cached clock: that one is stale while the wheel sleeps.
    this.deadline = Date.now() + delayMs;
    this.wheel.add(this);
  }

  /** Push the deadline out by the last delay (activity seen). */
  refresh(): void {
    if (this.deadline !== 0) this.deadline = this.wheel.now + this.delayMs;
    // (the cached clock is fine here: the wheel is running while this timer is armed)
  }

  clear(): void {
    if (this.deadline !== 0) {
      this.deadline = 0;
      this.wheel.remove(this);
    }
  }
}

export class TimerWheel {
  /** A cached clock, updated every tick: reading it costs nothing. */
  now = Date.now();
  private readonly timers = new Set<CoarseTimer<any>>();
  private interval: NodeJS.Timeout | undefined;

  constructor(readonly resolutionMs = 250) {}

  add(t: CoarseTimer<any>): void {
    this.timers.add(t);
    if (!this.interval) {
      this.now = Date.now();
      this.interval = setInterval(() => this.tick(), this.resolutionMs);
      this.interval.unref();
    }
  }

  remove(t: CoarseTimer<any>): void {
    this.timers.delete(t);
    if (this.timers.size === 0 && this.interval) {
      clearInterval(this.interval);
      this.interval = undefined;
    }
  }

  /** Fire due timers now (tests, and the interval). */
  tick(): void {
    const now = (this.now = Date.now());
    for (const t of this.timers) {
      if (t.deadline !== 0 && t.deadline <= now) {
        t.deadline = 0;
        this.timers.delete(t);
        try {
          t.onTimeout(t.arg);
        } catch {
          // a timeout handler must not break the wheel; handlers log their own errors
        }
      }
    }
    if (this.timers.size === 0 && this.interval) {
      clearInterval(this.interval);
      this.interval = undefined;
    }
  }

  get size(): number {
    return this.timers.size;
  }

  close(): void {
    if (this.interval) clearInterval(this.interval);
    this.interval = undefined;
    this.timers.clear();
  }
}
