/**
 * A monotonic millisecond clock read once per event, not once per use: the entry points of the byte
 * streams (stream.ts: a read, a connect, a write completion, the write flush, a close) and of the L7
 * engine (its timer tick) refresh it, and everything those callbacks do — timers armed, request start
 * and end times — reads the cached value. A request used to read the clock eight times (~50 ns each on this
 * class of machine); now two refreshes serve it.
 *
 * `performance.now()` base (monotonic, ms, fractional). Code that runs outside those entry points and
 * needs the time calls refresh() itself.
 */
import { performance } from 'node:perf_hooks';

export const clock = { now: performance.now() };

/** Read the real clock into `clock.now` and return it. */
export function refreshClock(): number {
  return (clock.now = performance.now());
}
