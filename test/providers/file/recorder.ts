/**
 * Recorders for provider tests: a snapshot sink and a log destination that keep what they receive
 * and let a test wait — with a bounded timeout, never a sleep — for the next matching item.
 */
import { EventEmitter } from 'node:events';
import type { Snapshot } from '../../../src/model/types.js';

class Waitable<T> {
  readonly items: T[] = [];
  private readonly events = new EventEmitter();

  protected add(item: T): void {
    this.items.push(item);
    this.events.emit('item');
  }

  /** Resolves with the first item at index >= `from` that matches; rejects after `timeoutMs`. */
  waitFor(match: (item: T) => boolean, from: number, timeoutMs = 5000, what = 'item'): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.items.slice(from).find(match);
        if (found === undefined) return false;
        clearTimeout(timer);
        this.events.off('item', onItem);
        resolve(found);
        return true;
      };
      const onItem = (): void => void check();
      const timer = setTimeout(() => {
        this.events.off('item', onItem);
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what}`));
      }, timeoutMs);
      this.events.on('item', onItem);
      check();
    });
  }
}

export class SnapshotRecorder extends Waitable<Snapshot> {
  readonly sink = (s: Snapshot): void => this.add(s);

  get count(): number {
    return this.items.length;
  }

  /** The next snapshot after the `count` already seen. */
  next(count = this.items.length, timeoutMs?: number): Promise<Snapshot> {
    return this.waitFor(() => true, count, timeoutMs, `snapshot #${count + 1}`);
  }
}

export interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino destination: every JSON line becomes a record. */
export class LogRecorder extends Waitable<LogRecord> {
  write(line: string): void {
    for (const l of line.split('\n')) if (l.trim() !== '') this.add(JSON.parse(l) as LogRecord);
  }

  get count(): number {
    return this.items.length;
  }

  /** The next record (after index `from`) whose message contains `text`. */
  message(text: string, from: number, timeoutMs?: number): Promise<LogRecord> {
    return this.waitFor((r) => r.msg.includes(text), from, timeoutMs, `a log line containing "${text}"`);
  }
}
