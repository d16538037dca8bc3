/** A hand-driven clock for the session-keys manager: timers fire when `advance` moves time past them. */
import type { SessionKeyClock } from '../../src/pki/session-keys.js';

export class FakeClock implements SessionKeyClock {
  t = Date.parse('2030-01-01T00:00:00Z');
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  readonly now = (): number => this.t;

  setTimer(fn: () => void, ms: number): { cancel(): void } {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }

  /** Move time on by `ms` and run the timers that came due, in the order they were set. */
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.live && x.at <= this.t);
    this.timers = this.timers.filter((x) => x.live && x.at > this.t);
    for (const x of due) x.fn();
  }

  /** Timers set and not yet fired or cancelled. */
  get pending(): number {
    return this.timers.filter((x) => x.live).length;
  }
}
