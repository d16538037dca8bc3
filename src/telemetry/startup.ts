/**
 * Where a process's start went: at the end of each step, the time since the process started (ms,
 * `performance.now()`) and the CPU time it had used (ms, user + system, every thread: on shared cores the
 * CPU says what a step costs where the wall clock also says what else ran). Logged once the process serves
 * (`portico is up` in the control, `worker: serving` in a worker), so a slow start can be read from the
 * log; bench/start.ts turns it into a timeline of every process (`processStart`, wall-clock ms, puts them
 * on one clock).
 */
export class StartClock {
  private readonly wall: Record<string, number> = {};
  private readonly cpu: Record<string, number> = {};

  /** The end of `step`, now. A step marked again keeps its first mark. */
  mark(step: string): void {
    if (this.wall[step] !== undefined) return;
    this.wall[step] = Math.round(performance.now());
    this.cpu[step] = cpuMs();
  }

  /** The log fields: `startMs` and `startCpuMs` (step → ms since the process started), `processStart`. */
  fields(): { startMs: Record<string, number>; startCpuMs: Record<string, number>; processStart: number } {
    return { startMs: { ...this.wall }, startCpuMs: { ...this.cpu }, processStart: Math.round(performance.timeOrigin) };
  }
}

function cpuMs(): number {
  const c = process.cpuUsage();
  return Math.round((c.user + c.system) / 1000);
}
