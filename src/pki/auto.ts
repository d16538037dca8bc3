/**
 * Automatic certificates for TLS route hosts (`entrypoints[name].tls.auto`), shared through the store.
 *
 * For each wanted host there is one record, `portico/pki/certs/<host>` (key sealed). An instance that
 * finds none (or finds it due for renewal) takes `portico/pki/locks/<host>` by compare-and-set on a
 * store lease before issuing, so N instances issue one certificate: the others see the lock taken and
 * wait for the record through their store watch. If the holder dies, its lease expires, the lock key
 * is deleted, and the watchers try again. Renewal runs at two thirds of a certificate's lifetime under
 * the same discipline, and reaches every instance's `onChange` subscribers through the watch.
 * The lock carries a fencing token (src/store/lock.ts) and the record is written with `fencedPut`, so a
 * holder whose lease lapsed mid-issuance cannot overwrite the certificate a later holder wrote.
 */
import { randomUUID } from 'node:crypto';
import type { RoutingTable } from '../model/types.js';
import type { Entry, Store, Watch, WatchEvent } from '../store/types.js';
import { fencedPut, tryLock } from '../store/lock.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import type { ClusterCA } from './ca.js';
import type { KeyType, SealedBox } from './crypto.js';

export const CERTS_PREFIX = 'portico/pki/certs/';
export const LOCKS_PREFIX = 'portico/pki/locks/';

export interface AutoCert {
  hosts: string[];
  certPem: string;
  /** The intermediate; serve `certPem + chainPem`. */
  chainPem: string;
  keyPem: string;
  notAfter: Date;
  serial: string;
}

export interface AutoCertOptions {
  ca: ClusterCA;
  store: Store;
  box: SealedBox;
  logger?: Logger;
  /** Lifetime of issued certificates. Default 90 days (fractions allowed: tests use seconds). */
  ttlDays?: number;
  /** Renew when this fraction of the lifetime has passed. Default 2/3. */
  renewAt?: number;
  keyType?: KeyType;
  /** TTL of the issuing lock's lease. Default 15 s: longer than any issuance, short enough to recover from a crash. */
  lockTtlMs?: number;
  /** Wait before retrying a failed issuance. Default 5 s. */
  retryMs?: number;
}

interface StoredCert {
  hosts: string[];
  certPem: string;
  chainPem: string;
  key: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  renewAt: string;
}

/** The hosts that want an automatic certificate: routes on `tls.auto` entrypoints, `*` excluded. Sorted. */
export function autoHosts(table: Pick<RoutingTable, 'routes' | 'entrypoints'>): string[] {
  const hosts = new Set<string>();
  for (const r of table.routes) {
    if (r.host === '*' || !r.host) continue;
    if (table.entrypoints[r.entrypoint]?.tls?.auto) hosts.add(r.host.toLowerCase());
  }
  return [...hosts].sort();
}

export class AutoCertManager {
  private readonly log: Logger;
  private readonly id = randomUUID();
  private wanted = new Set<string>();
  /** Everything under CERTS_PREFIX, decrypted lazily, by host. */
  private readonly records = new Map<string, { entry: Entry; cert: StoredCert; keyPem?: string }>();
  private readonly locks = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly recheck = new Set<string>();
  private readonly subscribers = new Set<(certs: AutoCert[]) => void>();
  private readonly watches: Watch[] = [];
  private ready: Promise<void> | undefined;
  private lastSignature = '';
  private closed = false;

  constructor(private readonly opts: AutoCertOptions) {
    this.log = (opts.logger ?? silentLogger).child({ component: 'pki-auto' });
  }

  /** Start watching the store. Called by `update` if not called first; resolves once the first resync arrived. */
  start(): Promise<void> {
    this.ready ??= Promise.all(
      [CERTS_PREFIX, LOCKS_PREFIX].map(
        (prefix) =>
          new Promise<void>((resolve) => {
            let first = true;
            this.watches.push(
              this.opts.store.watch(prefix, (ev) => {
                this.onEvent(prefix, ev);
                if (first && ev.type === 'resync') {
                  first = false;
                  resolve();
                }
              }),
            );
          }),
      ),
    ).then(() => undefined);
    return this.ready;
  }

  /** The routing table changed: ensure a certificate for every auto-TLS host in it. */
  update(table: Pick<RoutingTable, 'routes' | 'entrypoints'>): void {
    this.setHosts(autoHosts(table));
  }

  /** The same, given the hosts directly. */
  setHosts(hosts: string[]): void {
    if (this.closed) return;
    this.wanted = new Set(hosts.map((h) => h.toLowerCase()));
    for (const [host, timer] of this.timers) {
      if (!this.wanted.has(host)) {
        clearTimeout(timer);
        this.timers.delete(host);
      }
    }
    void this.start().then(() => {
      for (const host of this.wanted) this.kick(host);
      this.emit();
    });
  }

  /** Subscribe to the set of certificates for wanted hosts; called now if any exist, then on every change. Returns unsubscribe. */
  onChange(cb: (certs: AutoCert[]) => void): () => void {
    this.subscribers.add(cb);
    const now = this.certs();
    if (now.length > 0) cb(now);
    return () => this.subscribers.delete(cb);
  }

  /** The current certificates for wanted hosts. */
  certs(): AutoCert[] {
    const out: AutoCert[] = [];
    for (const host of [...this.wanted].sort()) {
      const r = this.records.get(host);
      if (!r) continue;
      try {
        r.keyPem ??= this.opts.box.openString(r.cert.key, CERTS_PREFIX + host);
      } catch (err) {
        this.log.error({ host, err: (err as Error).message }, 'cannot open a stored certificate key');
        continue;
      }
      out.push({
        hosts: r.cert.hosts,
        certPem: r.cert.certPem,
        chainPem: r.cert.chainPem,
        keyPem: r.keyPem,
        notAfter: new Date(r.cert.notAfter),
        serial: r.cert.serial,
      });
    }
    return out;
  }

  /** Resolves when every wanted host has a certificate (or rejects after `timeoutMs`). */
  async settled(timeoutMs = 10_000): Promise<AutoCert[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await Promise.all([...this.inflight.values()]);
      const certs = this.certs();
      if ([...this.wanted].every((h) => this.records.has(h))) return certs;
      if (Date.now() > deadline) throw new Error(`auto certificates not ready after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.closed = true;
    for (const w of this.watches) w.close();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.subscribers.clear();
  }

  // -------------------------------------------------------------------------------------------------

  private onEvent(prefix: string, ev: WatchEvent): void {
    if (ev.type === 'resync') {
      if (prefix === CERTS_PREFIX) this.records.clear();
      else this.locks.clear();
      for (const e of ev.entries) this.apply(e);
    } else if (ev.type === 'put') {
      this.apply(ev.entry);
    } else {
      if (ev.key.startsWith(CERTS_PREFIX)) this.records.delete(ev.key.slice(CERTS_PREFIX.length));
      else if (ev.key.startsWith(LOCKS_PREFIX)) {
        const host = ev.key.slice(LOCKS_PREFIX.length);
        this.locks.delete(host);
        // A lock went away (released, or its holder died): if the host still needs work, try ourselves.
        if (this.wanted.has(host) && this.due(host)) this.kick(host);
      }
    }
    if (prefix === CERTS_PREFIX) {
      for (const host of this.wanted) if (this.records.has(host)) this.schedule(host);
      this.emit();
    }
  }

  private apply(e: Entry): void {
    if (e.key.startsWith(CERTS_PREFIX)) {
      const host = e.key.slice(CERTS_PREFIX.length);
      const prev = this.records.get(host);
      if (prev && prev.entry.revision >= e.revision) return;
      try {
        this.records.set(host, { entry: e, cert: JSON.parse(e.value.toString('utf8')) as StoredCert });
      } catch {
        this.log.warn({ key: e.key }, 'ignoring an unreadable certificate record');
      }
    } else if (e.key.startsWith(LOCKS_PREFIX)) {
      this.locks.add(e.key.slice(LOCKS_PREFIX.length));
    }
  }

  /** True when `host` has no certificate, or its renewal time has come. */
  private due(host: string): boolean {
    const r = this.records.get(host);
    return !r || Date.parse(r.cert.renewAt) <= Date.now();
  }

  private kick(host: string): void {
    if (this.closed) return;
    if (this.inflight.has(host)) {
      this.recheck.add(host); // something changed while we were busy: look again when done
      return;
    }
    if (!this.due(host)) {
      this.schedule(host);
      return;
    }
    const p = this.issueUnderLock(host)
      .catch((err: unknown) => {
        this.log.error({ host, err: (err as Error).message }, 'automatic certificate failed; retrying');
        const t = setTimeout(() => this.wanted.has(host) && this.kick(host), this.opts.retryMs ?? 5000);
        t.unref();
      })
      .finally(() => {
        this.inflight.delete(host);
        if (this.recheck.delete(host) && this.wanted.has(host) && !this.locks.has(host)) this.kick(host);
      });
    this.inflight.set(host, p);
  }

  private async issueUnderLock(host: string): Promise<void> {
    const { store } = this.opts;
    if (this.locks.has(host)) return; // someone is on it; their record (or their lock's expiry) will reach us
    const lock = await tryLock(store, LOCKS_PREFIX + host, { ttlMs: this.opts.lockTtlMs ?? 15_000, owner: this.id });
    if (!lock) return;
    try {
      // Between our look and the lock, another instance may have finished: read the record itself.
      const cur = await store.get(CERTS_PREFIX + host);
      if (cur) {
        this.apply(cur);
        if (!this.due(host)) return;
      }
      if (this.closed || lock.signal.aborted) return;
      const ttlDays = this.opts.ttlDays ?? 90;
      const leaf = await this.opts.ca.issue({
        hosts: [host],
        usage: 'server',
        ttlDays,
        ...(this.opts.keyType ? { keyType: this.opts.keyType } : {}),
      });
      const issuedAt = Date.now();
      const fraction = this.opts.renewAt ?? 2 / 3;
      const renewAt = new Date(issuedAt + (leaf.notAfter.getTime() - issuedAt) * fraction);
      const rec: StoredCert = {
        hosts: [host],
        certPem: leaf.certPem,
        chainPem: leaf.chainPem,
        key: this.opts.box.sealString(leaf.keyPem, CERTS_PREFIX + host),
        serial: leaf.serial,
        notBefore: leaf.notBefore.toISOString(),
        notAfter: leaf.notAfter.toISOString(),
        issuedAt: new Date(issuedAt).toISOString(),
        renewAt: renewAt.toISOString(),
      };
      // Fenced: if our lease lapsed during issuance and a later holder already wrote, ours is refused.
      const written = await fencedPut(store, CERTS_PREFIX + host, lock.token, rec as unknown as Record<string, unknown>);
      if (!written.ok) {
        this.log.warn(
          { host, token: lock.token, fencedBy: written.fencedBy },
          "certificate issued under a lock that had lapsed; a newer holder's record stands",
        );
        return;
      }
      this.apply(written.entry);
      this.records.get(host)!.keyPem = leaf.keyPem;
      this.log.info(
        { host, serial: leaf.serial, notAfter: rec.notAfter, renewAt: rec.renewAt, renewal: cur !== undefined, fence: lock.token },
        'automatic certificate issued',
      );
      this.schedule(host);
      this.emit();
    } finally {
      await lock.release();
    }
  }

  /** (Re)arm the renewal timer of `host` at its record's renewAt. */
  private schedule(host: string): void {
    const r = this.records.get(host);
    if (!r || this.closed) return;
    const old = this.timers.get(host);
    if (old) clearTimeout(old);
    const delay = Math.max(0, Math.min(Date.parse(r.cert.renewAt) - Date.now(), 2 ** 31 - 1));
    const t = setTimeout(() => {
      this.timers.delete(host);
      if (this.wanted.has(host)) this.kick(host);
    }, delay);
    t.unref();
    this.timers.set(host, t);
  }

  /** Tell subscribers, when the set of (host, serial) differs from what they last saw. */
  private emit(): void {
    const certs = this.certs();
    const sig = certs.map((c) => `${c.hosts.join(',')}=${c.serial}`).join(';');
    if (sig === this.lastSignature) return;
    this.lastSignature = sig;
    for (const cb of this.subscribers) {
      try {
        cb(certs);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'auto certificate subscriber threw');
      }
    }
  }
}
