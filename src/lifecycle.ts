/**
 * The appliance's lifecycle: every part that is started pushes its closer onto one stack, and the stack
 * unwinds newest first, both when a later part fails to start and on stop. Teardown is written once, here;
 * a part cannot be forgotten on an error path because it registered its closer when it was created.
 *
 *   const life = new Lifecycle(logger);
 *   const store = life.add('store', await openStore(...), (s) => s.close());
 *   life.defer('provider file', () => file.stop());   // before start(): a half-started part is stopped too
 *   await file.start(sink);
 *   ...
 *   await life.stop();                                 // file, then store
 *
 * Closers must be idempotent and safe on a part that never finished starting.
 *
 * A closer that fails is logged and the unwinding goes on: one stuck part never keeps the others open.
 */
import type { Logger } from './telemetry/log.js';
import { silentLogger } from './telemetry/log.js';

type Closer = () => unknown;

export class Lifecycle {
  private readonly closers: Array<{ name: string; close: Closer }> = [];
  private readonly log: Logger;
  private stopping: Promise<void> | undefined;

  constructor(logger: Logger = silentLogger) {
    this.log = logger.child({ component: 'lifecycle' });
  }

  /** True once stop() has been called: parts that react to events (a new table) do nothing more. */
  get stopped(): boolean {
    return this.stopping !== undefined;
  }

  /** Keep `part` (already created or started) and push its closer; returns the part. */
  add<T>(name: string, part: T, close: (part: T) => unknown): T {
    this.defer(name, () => close(part));
    return part;
  }

  /** Push the closer of something already created or started. */
  defer(name: string, close: Closer): void {
    this.closers.push({ name, close });
  }

  /** Run every closer, newest first, each awaited. Idempotent: later calls get the same promise. */
  stop(): Promise<void> {
    this.stopping ??= this.unwind();
    return this.stopping;
  }

  private async unwind(): Promise<void> {
    for (let c = this.closers.pop(); c; c = this.closers.pop()) {
      try {
        await c.close();
      } catch (err) {
        this.log.error({ err, part: c.name }, `stopping ${c.name} failed; stopping the rest`);
      }
    }
  }
}
