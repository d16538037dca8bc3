/**
 * Session keys every instance on a store shares: the sticky-cookie secret (the HMAC key of the L7
 * `sticky` balancer's cookie ids) and the TLS session-ticket keys. With them shared, a sticky cookie
 * issued by one instance routes to the same endpoint on every other one and after a restart, and a TLS
 * session made with one instance resumes on another.
 *
 * One record, `portico/pki/session-keys`: the schedule in clear (generations, times), the keys sealed
 * (AES-256-GCM under the master key, src/pki/crypto.ts) with the generations in the additional data, so
 * keys and schedule cannot be recombined. Each kind holds a current key and, for a grace period after a
 * rotation, the previous one:
 *
 * - the first instance to find no record creates one, by compare-and-set on "absent", so instances
 *   starting together agree on the winner's keys; every instance reads it and follows it through a
 *   store watch;
 * - rotation is a compare-and-set on the record's revision: whichever instance's timer fires first
 *   writes the next generation, the others' writes are refused and they take the winner's through the
 *   watch. Retiring a previous key at the end of its grace is the same kind of write;
 * - a record deleted (or lost with a Redis that restarted empty) is written back with the keys the
 *   instance holds, so cookies and tickets keep working; a record that cannot be read (bad JSON, wrong
 *   key lengths) is replaced the same way; one sealed under another master key, or written by a newer
 *   format, is left alone and logged (instances sharing a store must share the master key);
 * - until the store answers, subscribers simply hear nothing: the L7 plane serves with its own random
 *   keys meanwhile, and nothing waits on the store on the request path.
 *
 * Schedule (defaults, chosen as an operator would):
 * - Ticket keys: a new one every 12 h; the previous one still decrypts for 1 h. A ticket key can decrypt
 *   every session resumed under it, so it should live short (Mozilla's guidance is to rotate at least
 *   daily); the L7 plane's tickets are good for 300 s, so an hour of grace covers every live ticket and
 *   some clock skew between instances.
 * - Sticky secret: a new one every 30 days, the previous one accepted for the 30 days after. The secret
 *   only keeps cookie ids unguessable (an id names an endpoint, it grants nothing), while a rotation
 *   costs a client its endpoint if it is away for longer than the grace: a client is re-stamped under
 *   the current secret on its next request, so one that comes back at least monthly never loses it.
 * Times are decided from the record by whichever instance looks; the clock is injected (tests move it).
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import type { Entry, Store, Watch, WatchEvent } from '../store/types.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import type { SealedBox } from './crypto.js';

export const SESSION_KEYS_KEY = 'portico/pki/session-keys';
/** Node's `setTicketKeys` layout: key name (16) | HMAC key (16) | AES key (16). */
export const TICKET_KEY_BYTES = 48;
export const STICKY_SECRET_BYTES = 32;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The longest delay setTimeout takes; a later due time is re-checked when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const SESSION_KEY_DEFAULTS = {
  ticketRotateMs: 12 * HOUR,
  ticketGraceMs: 1 * HOUR,
  stickyRotateMs: 30 * DAY,
  stickyGraceMs: 30 * DAY,
  retryMs: 5000,
} as const;

export type SessionKeyKind = 'tickets' | 'sticky';

/** Time and timers, injected so tests move the clock instead of waiting. */
export interface SessionKeyClock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Call `fn` after `ms` (the real clock's timers do not hold the process open). */
  setTimer(fn: () => void, ms: number): { cancel(): void };
}

export const systemClock: SessionKeyClock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

export interface SessionKeyOptions {
  store: Store;
  box: SealedBox;
  logger?: Logger;
  clock?: SessionKeyClock;
  /** A new ticket key this often, ms. Default 12 h; 0: never. Written into the record by whoever rotates. */
  ticketRotateMs?: number;
  /** How long the previous ticket key still decrypts after a rotation, ms. Default 1 h; 0: not at all. */
  ticketGraceMs?: number;
  /** A new sticky secret this often, ms. Default 30 days; 0: never. */
  stickyRotateMs?: number;
  /** How long cookies under the previous sticky secret still route, ms. Default 30 days. */
  stickyGraceMs?: number;
  /** Wait before retrying after the store refused or failed a write, ms. Default 5 s. */
  retryMs?: number;
}

/**
 * One kind of key: the current one (issued under) and, during its grace, the previous one (accepted).
 * Serialises (JSON, `util.inspect`, so pino too) without the key bytes.
 */
export class RotatingKey {
  constructor(
    readonly current: Buffer,
    readonly previous: Buffer | undefined,
    /** 1 for the first key, +1 per rotation. */
    readonly generation: number,
    readonly rotatedAt: Date,
    /** When the next rotation is due; undefined: never. */
    readonly rotateAt: Date | undefined,
    /** When the previous key stops being accepted (undefined: at the next rotation, or there is none). */
    readonly previousUntil: Date | undefined,
  ) {}

  toJSON(): Record<string, unknown> {
    return {
      generation: this.generation,
      rotatedAt: this.rotatedAt.toISOString(),
      rotateAt: this.rotateAt?.toISOString(),
      previous: this.previous !== undefined,
      previousUntil: this.previousUntil?.toISOString(),
    };
  }

  [inspect.custom](): string {
    return `RotatingKey ${JSON.stringify(this.toJSON())}`;
  }
}

/** What subscribers get: both kinds, as of one revision of the record. Never serialises key bytes. */
export class SessionKeys {
  constructor(
    readonly sticky: RotatingKey,
    readonly tickets: RotatingKey,
    /** Store revision of the record they came from. */
    readonly revision: number,
  ) {}

  toJSON(): Record<string, unknown> {
    return { revision: this.revision, sticky: this.sticky.toJSON(), tickets: this.tickets.toJSON() };
  }

  [inspect.custom](): string {
    return `SessionKeys ${JSON.stringify(this.toJSON())}`;
  }
}

// ---------------------------------------------------------------------------------------------------
// The record

interface StoredKind {
  generation: number;
  rotatedAt: string;
  rotateAt?: string;
  previousUntil?: string;
}

interface StoredRecord {
  version: 1;
  tickets: StoredKind;
  sticky: StoredKind;
  /** Sealed JSON `{tickets:{current,previous?},sticky:{current,previous?}}` (base64 keys), base64. */
  keys: string;
}

interface PlainKeys {
  tickets: { current: Buffer; previous?: Buffer | undefined };
  sticky: { current: Buffer; previous?: Buffer | undefined };
}

const KEY_BYTES: Record<SessionKeyKind, number> = { tickets: TICKET_KEY_BYTES, sticky: STICKY_SECRET_BYTES };

/** The additional data the keys are sealed under: the record's key and both generations. */
function aad(rec: Pick<StoredRecord, 'tickets' | 'sticky'>): string {
  return `${SESSION_KEYS_KEY}#tickets=${rec.tickets.generation};sticky=${rec.sticky.generation}`;
}

type Decoded = { ok: true; record: StoredRecord; keys: SessionKeys } | { ok: false; reason: string; repairable: boolean };

function isTime(v: unknown): v is string {
  return typeof v === 'string' && Number.isFinite(Date.parse(v));
}

function checkKind(v: unknown, kind: SessionKeyKind): string | undefined {
  if (typeof v !== 'object' || v === null) return `${kind}: missing`;
  const k = v as Record<string, unknown>;
  if (!Number.isSafeInteger(k.generation) || (k.generation as number) < 1) return `${kind}.generation: not a positive integer`;
  if (!isTime(k.rotatedAt)) return `${kind}.rotatedAt: not a time`;
  if (k.rotateAt !== undefined && !isTime(k.rotateAt)) return `${kind}.rotateAt: not a time`;
  if (k.previousUntil !== undefined && !isTime(k.previousUntil)) return `${kind}.previousUntil: not a time`;
  return undefined;
}

function keyOf(v: unknown, kind: SessionKeyKind, which: 'current' | 'previous'): Buffer | undefined {
  if (typeof v !== 'string') return undefined;
  const b = Buffer.from(v, 'base64');
  if (b.length !== KEY_BYTES[kind]) throw new Error(`${kind}.${which}: ${b.length} bytes, want ${KEY_BYTES[kind]}`);
  return b;
}

function decode(entry: Entry, box: SealedBox): Decoded {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(entry.value.toString('utf8')) as Record<string, unknown>;
    if (typeof rec !== 'object' || rec === null) throw new Error('not an object');
  } catch (err) {
    return { ok: false, reason: `not a JSON object (${(err as Error).message})`, repairable: true };
  }
  if (typeof rec.version === 'number' && rec.version > 1)
    return { ok: false, reason: `format version ${rec.version}, newer than this instance reads`, repairable: false };
  const shape =
    (rec.version !== 1 ? 'version: not 1' : undefined) ??
    checkKind(rec.tickets, 'tickets') ??
    checkKind(rec.sticky, 'sticky') ??
    (typeof rec.keys !== 'string' ? 'keys: missing' : undefined);
  if (shape) return { ok: false, reason: shape, repairable: true };
  const record = rec as unknown as StoredRecord;
  let inner: Record<SessionKeyKind, { current?: unknown; previous?: unknown }>;
  try {
    inner = JSON.parse(box.open(Buffer.from(record.keys, 'base64'), aad(record)).toString('utf8')) as typeof inner;
  } catch (err) {
    // Sealed under another master key (or tampered with): other instances may read it, so it stays.
    return { ok: false, reason: (err as Error).message, repairable: false };
  }
  try {
    const kind = (k: SessionKeyKind): RotatingKey => {
      const s = record[k];
      const current = keyOf(inner[k]?.current, k, 'current');
      if (!current) throw new Error(`${k}.current: missing`);
      return new RotatingKey(
        current,
        keyOf(inner[k]?.previous, k, 'previous'),
        s.generation,
        new Date(s.rotatedAt),
        s.rotateAt !== undefined ? new Date(s.rotateAt) : undefined,
        s.previousUntil !== undefined ? new Date(s.previousUntil) : undefined,
      );
    };
    return { ok: true, record, keys: new SessionKeys(kind('sticky'), kind('tickets'), entry.revision) };
  } catch (err) {
    return { ok: false, reason: (err as Error).message, repairable: true };
  }
}

function encode(box: SealedBox, meta: Pick<StoredRecord, 'tickets' | 'sticky'>, keys: PlainKeys): string {
  const b64 = (k: { current: Buffer; previous?: Buffer | undefined }) => ({
    current: k.current.toString('base64'),
    ...(k.previous !== undefined && { previous: k.previous.toString('base64') }),
  });
  const sealed = box.seal(JSON.stringify({ tickets: b64(keys.tickets), sticky: b64(keys.sticky) }), aad(meta));
  const record: StoredRecord = { version: 1, tickets: meta.tickets, sticky: meta.sticky, keys: sealed.toString('base64') };
  return JSON.stringify(record);
}

/** When `rec` next needs a write (a rotation, or a previous key retired); undefined: never. */
export function nextDue(rec: Pick<StoredRecord, 'tickets' | 'sticky'>, keys: Pick<SessionKeys, 'tickets' | 'sticky'>): number | undefined {
  let due: number | undefined;
  for (const kind of ['tickets', 'sticky'] as const) {
    const s = rec[kind];
    const times = [s.rotateAt, keys[kind].previous !== undefined ? s.previousUntil : undefined];
    for (const t of times) if (t !== undefined) due = Math.min(due ?? Infinity, Date.parse(t));
  }
  return due;
}

// ---------------------------------------------------------------------------------------------------

interface Held {
  revision: number;
  record: StoredRecord;
  keys: SessionKeys;
}

export class SessionKeyManager {
  private readonly log: Logger;
  private readonly clock: SessionKeyClock;
  private readonly periods: Record<SessionKeyKind, { rotateMs: number; graceMs: number }>;
  private readonly retryMs: number;
  private held: Held | undefined;
  /** The revision of a record that could not be read, once logged (and whether it may be replaced). */
  private bad: { revision: number; repairable: boolean } | undefined;
  private readonly subscribers = new Set<(keys: SessionKeys) => void>();
  private watch: Watch | undefined;
  private timer: { cancel(): void } | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private ready: Promise<void> | undefined;
  private resolveReady: (() => void) | undefined;
  private lastSignature = '';
  private closed = false;

  constructor(private readonly opts: SessionKeyOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'session-keys' });
    this.clock = opts.clock ?? systemClock;
    const ms = (name: keyof typeof SESSION_KEY_DEFAULTS): number => {
      const v = opts[name] ?? SESSION_KEY_DEFAULTS[name];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
        throw new RangeError(`session keys: ${name} must be a number of ms ≥ 0, got ${v}`);
      return v;
    };
    this.periods = {
      tickets: { rotateMs: ms('ticketRotateMs'), graceMs: ms('ticketGraceMs') },
      sticky: { rotateMs: ms('stickyRotateMs'), graceMs: ms('stickyGraceMs') },
    };
    this.retryMs = Math.max(1, ms('retryMs'));
  }

  /**
   * Watch the record (creating it if there is none). Resolves once the store has answered: keys are held
   * (read, or written by this instance), or the record there cannot be opened here (`keys()` stays
   * undefined; logged). Idempotent.
   */
  start(): Promise<void> {
    if (!this.ready) {
      this.ready = new Promise<void>((resolve) => {
        this.resolveReady = resolve;
      });
      this.watch = this.opts.store.watch(SESSION_KEYS_KEY, (ev) => this.onEvent(ev));
    }
    return this.ready;
  }

  /** The keys held now; undefined until the store has answered. */
  keys(): SessionKeys | undefined {
    return this.held?.keys;
  }

  /** Called now if keys are held, then on every change (a rotation, a retired previous key). Returns unsubscribe. */
  onChange(cb: (keys: SessionKeys) => void): () => void {
    this.subscribers.add(cb);
    if (this.held) this.call(cb, this.held.keys);
    return () => this.subscribers.delete(cb);
  }

  /**
   * Bring the record up to date: create it if absent, write back what this instance holds if it was
   * deleted or cannot be read, rotate or retire what is due. The timer calls it at the next due time;
   * a call while one runs runs once more after it. Store errors are logged and retried after `retryMs`.
   */
  maintain(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.step()
      .catch((err: unknown) => {
        this.log.warn(
          { record: SESSION_KEYS_KEY, err: (err as Error).message, retryMs: this.retryMs },
          'session keys: the store failed; retrying',
        );
        this.arm(this.clock.now() + this.retryMs);
      })
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.closed) {
          this.again = false;
          void this.maintain();
        }
      });
    return this.running;
  }

  close(): void {
    this.closed = true;
    this.watch?.close();
    this.timer?.cancel();
    this.timer = undefined;
    this.subscribers.clear();
  }

  // -------------------------------------------------------------------------------------------------

  private onEvent(ev: WatchEvent): void {
    if (this.closed) return;
    if (ev.type === 'resync') {
      const e = ev.entries.find((x) => x.key === SESSION_KEYS_KEY);
      if (e) this.take(e, true);
      else void this.maintain(); // none: create it (or write back what we hold)
    } else if (ev.key !== SESSION_KEYS_KEY) {
      return; // a longer key under the same prefix
    } else if (ev.type === 'put') {
      this.take(ev.entry);
    } else {
      this.log.warn(
        { record: SESSION_KEYS_KEY, revision: ev.revision },
        'session keys: the record was deleted; writing back the keys held here',
      );
      void this.maintain();
    }
  }

  /**
   * Adopt `entry` if it is readable and newer than what is held; from a resync, if it is another revision
   * at all (a Redis that restarted from an older file counts revisions from there).
   */
  private take(entry: Entry, resync = false): void {
    if (this.held && (resync ? entry.revision === this.held.revision : entry.revision <= this.held.revision)) return;
    const d = decode(entry, this.opts.box);
    if (!d.ok) {
      if (this.bad?.revision !== entry.revision) {
        this.bad = { revision: entry.revision, repairable: d.repairable };
        this.log.error(
          { record: SESSION_KEYS_KEY, revision: entry.revision, reason: d.reason },
          d.repairable
            ? 'session keys: the record cannot be read; replacing it'
            : 'session keys: the record cannot be opened here; keeping the keys this instance has (instances sharing a store need the same PKI master key)',
        );
        if (d.repairable) void this.maintain();
        else this.resolveReady?.(); // the store has answered: there is nothing here for us to take
      }
      return;
    }
    const first = this.held === undefined;
    this.bad = undefined;
    this.held = { revision: entry.revision, record: d.record, keys: d.keys };
    if (first) this.log.info({ record: SESSION_KEYS_KEY, keys: d.keys.toJSON() }, 'session keys in effect');
    this.arm(nextDue(d.record, d.keys));
    this.emit();
    this.resolveReady?.();
  }

  private async step(): Promise<void> {
    const { store } = this.opts;
    // The watch may lag behind a write (ours or another instance's): decide on what the store has now.
    const cur = await store.get(SESSION_KEYS_KEY);
    if (this.closed) return;
    if (cur) this.take(cur);
    const now = this.clock.now();
    let text: string;
    let what: string;
    if (cur && this.held?.revision === cur.revision) {
      const next = this.advance(this.held, now);
      if (!next) {
        this.arm(nextDue(this.held.record, this.held.keys));
        return;
      }
      ({ text, what } = next);
    } else if (cur && !(this.bad?.revision === cur.revision && this.bad.repairable)) {
      return; // unreadable and not ours to replace (logged in take)
    } else {
      // Absent, or unreadable junk: what this instance holds (the same generations), else new keys.
      text = this.held ? encode(this.opts.box, this.held.record, this.held.keys) : this.fresh(now);
      what = this.held ? 'written back' : 'created';
    }
    const written = await store.cas(SESSION_KEYS_KEY, cur?.revision ?? 0, text);
    if (this.closed) return;
    if (written) {
      this.take(written);
      this.log.info(
        { record: SESSION_KEYS_KEY, revision: written.revision, change: what, keys: this.held?.keys.toJSON() },
        'session keys written',
      );
      return;
    }
    // Another instance wrote first: its record is the one (the watch brings it too).
    const theirs = await store.get(SESSION_KEYS_KEY);
    if (theirs && !this.closed) this.take(theirs);
  }

  /** New keys of generation 1, for a store that has none. */
  private fresh(now: number): string {
    const meta = { tickets: this.newKind(1, now, 'tickets'), sticky: this.newKind(1, now, 'sticky') };
    return encode(this.opts.box, meta, {
      tickets: { current: randomBytes(TICKET_KEY_BYTES) },
      sticky: { current: randomBytes(STICKY_SECRET_BYTES) },
    });
  }

  private newKind(generation: number, now: number, kind: SessionKeyKind, withPrevious = false): StoredKind {
    const { rotateMs, graceMs } = this.periods[kind];
    return {
      generation,
      rotatedAt: new Date(now).toISOString(),
      ...(rotateMs > 0 && { rotateAt: new Date(now + rotateMs).toISOString() }),
      ...(withPrevious && { previousUntil: new Date(now + graceMs).toISOString() }),
    };
  }

  /** The record after what is due at `now` (rotations, retirements), or undefined when nothing is. */
  private advance(held: Held, now: number): { text: string; what: string } | undefined {
    const meta = { tickets: held.record.tickets, sticky: held.record.sticky };
    const keys: PlainKeys = { tickets: { ...held.keys.tickets }, sticky: { ...held.keys.sticky } };
    const done: string[] = [];
    for (const kind of ['tickets', 'sticky'] as const) {
      const s = meta[kind];
      const k = held.keys[kind];
      if (s.rotateAt !== undefined && now >= Date.parse(s.rotateAt)) {
        const keep = this.periods[kind].graceMs > 0;
        meta[kind] = this.newKind(s.generation + 1, now, kind, keep);
        keys[kind] = { current: randomBytes(KEY_BYTES[kind]), ...(keep && { previous: k.current }) };
        done.push(`${kind} rotated`);
      } else if (k.previous !== undefined && s.previousUntil !== undefined && now >= Date.parse(s.previousUntil)) {
        meta[kind] = { generation: s.generation, rotatedAt: s.rotatedAt, ...(s.rotateAt !== undefined && { rotateAt: s.rotateAt }) };
        keys[kind] = { current: k.current };
        done.push(`previous ${kind} key retired`);
      }
    }
    if (done.length === 0) return undefined;
    // A retirement keeps the generation, and so the additional data: the keys are sealed afresh anyway.
    return { text: encode(this.opts.box, meta, keys), what: done.join(', ') };
  }

  /** (Re)arm the one timer at `due` (ms since the epoch); undefined: nothing is ever due. */
  private arm(due: number | undefined): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (due === undefined || this.closed) return;
    const delay = Math.max(0, Math.min(due - this.clock.now(), MAX_TIMER_MS));
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      void this.maintain();
    }, delay);
  }

  /** Tell subscribers, when generations or the presence of a previous key changed. */
  private emit(): void {
    const k = this.held?.keys;
    if (!k) return;
    const sig = `${k.tickets.generation}${k.tickets.previous ? '+' : ''}/${k.sticky.generation}${k.sticky.previous ? '+' : ''}`;
    if (sig === this.lastSignature) return;
    this.lastSignature = sig;
    for (const cb of this.subscribers) this.call(cb, k);
  }

  private call(cb: (keys: SessionKeys) => void, keys: SessionKeys): void {
    try {
      cb(keys);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'session keys: a subscriber threw');
    }
  }
}
