/* eslint-disable @typescript-eslint/no-explicit-any -- the wheel holds timers of every argument type */
/**
 * Coarse timers for the hot path (after undici's util/timers): one unref'd interval ticks every
 * `resolutionMs` and fires every armed timer whose deadline has passed. Arming, refreshing and clearing
 * are field writes — no setTimeout/clearTimeout per request, no closure per request (the callback and its
 * argument are fixed when the timer is made, once per connection), and no set insertion or removal per
 * request either: a cleared timer stays in the wheel's set, disarmed, until the next tick drops it.
 *
 * Deadlines are on the engine's cached monotonic clock (clock.ts), which every I/O callback and every
 * tick refreshes (so it is never more than one tick stale while timers are armed). Precision is ± one tick: fine for header, idle and response timeouts measured in seconds, and the tick
 * can be made small in tests.
 */
import { clock, refreshClock } from './clock.js';

export class CoarseTimer<T = unknown> {
  /** Monotonic ms when it fires; 0 = disarmed. */
  deadline = 0;
  delayMs = 0;
  /** In the wheel's set (armed, or cleared since the last tick). */
  inWheel = false;
  constructor(
    readonly wheel: TimerWheel,
    readonly onTimeout: (arg: T) => void,
    readonly arg: T,
  ) {}

  /** Arm (or re-arm) to fire `delayMs` from now. A delay ≤ 0 disarms. */
  start(delayMs: number): void {
    this.delayMs = delayMs;
    if (delayMs <= 0) {
      this.deadline = 0;
      return;
    }
    // (add() first: a wheel that was not running refreshes the clock, which nothing may have read lately)
    if (!this.inWheel) this.wheel.add(this);
    this.deadline = clock.now + delayMs;
  }

  /** Push the deadline out by the last delay (activity seen). */
  refresh(): void {
    if (this.deadline !== 0) this.deadline = clock.now + this.delayMs;
  }

  clear(): void {
    this.deadline = 0;
  }
}

export class TimerWheel {
  private readonly timers = new Set<CoarseTimer<any>>();
  private interval: NodeJS.Timeout | undefined;

  constructor(readonly resolutionMs = 250) {}

  /** The cached clock (for callers that only need ~one-tick precision). */
  get now(): number {
    return clock.now;
  }

  add(t: CoarseTimer<any>): void {
    t.inWheel = true;
    this.timers.add(t);
    if (!this.interval) {
      refreshClock();
      this.interval = setInterval(() => this.tick(), this.resolutionMs);
      this.interval.unref();
    }
  }

  /** Fire due timers now (tests, and the interval); drop disarmed ones. */
  tick(): void {
    const now = refreshClock();
    for (const t of this.timers) {
      if (t.deadline === 0) {
        t.inWheel = false;
        this.timers.delete(t);
      } else if (t.deadline <= now) {
        t.deadline = 0;
        t.inWheel = false;
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

  /** Armed timers. */
  get size(): number {
    let n = 0;
    for (const t of this.timers) if (t.deadline !== 0) n++;
    return n;
  }

  close(): void {
    if (this.interval) clearInterval(this.interval);
    this.interval = undefined;
    for (const t of this.timers) {
      t.deadline = 0;
      t.inWheel = false;
    }
    this.timers.clear();
  }
}
