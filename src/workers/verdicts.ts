/**
 * The control's copy of the leader's health verdicts (src/workers/messages.ts): what a worker that starts
 * is handed before its first table, so that it serves a DOWN endpoint DOWN from its first request.
 *
 * Only DOWN verdicts are kept (UP is every endpoint's default), per plane, then per service for checks per
 * service (L7) or per endpoint for checks per endpoint (L4, verdicts without a service). Only endpoints of
 * the table handed to the workers are kept: a verdict for an endpoint that is not there is dropped, and
 * each new table drops the verdicts of the endpoints it no longer checks — looking at the services it
 * changed only, so a change costs what it changed. So the map never holds more than the table's checked
 * endpoints, once per plane.
 *
 * A verdict is about the check the leader had when it found it, which may be older than the table here: an
 * endpoint removed from a service (or its check) and added back meanwhile is a new check there, UP. So the
 * endpoints that left a service's check are noted with the table's version until the leader reports it
 * applied that version (it reports in order with its verdicts), and a verdict on one of them is dropped:
 * the leader would never correct it, as its new check starts UP and an UP it finds is no transition.
 * (Checks per endpoint need no such note: a new one has no verdict, so its first probe reports one.)
 */
import { formatListen } from '../model/parse.js';
import type { RoutingTable, Service, TableChange } from '../model/types.js';
import type { PlaneVerdict } from './messages.js';

/** The scope of a verdict per endpoint (no service). */
const PER_ENDPOINT = '';

/** Reasons of the DOWN endpoints of one plane: by scope (service id, or PER_ENDPOINT), then by endpoint key. */
type PlaneDown = Map<string, Map<string, string | undefined>>;

const keyOf = (ep: { address: string; port: number }): string => formatListen({ host: ep.address, port: ep.port });

export class SharedVerdicts {
  private readonly down = new Map<string, PlaneDown>();
  /** How many services of the table list each endpoint key: a verdict per endpoint is kept while one does. */
  private readonly listed = new Map<string, number>();
  private table: RoutingTable | undefined;
  /** `<service id> <key>` of endpoints that left the service's check, with the version: until the leader applies it. */
  private readonly left = new Map<string, number>();

  /** DOWN verdicts kept now. */
  get size(): number {
    let n = 0;
    for (const scopes of this.down.values()) for (const keys of scopes.values()) n += keys.size;
    return n;
  }

  /**
   * Follow the table handed to the workers. With `change` from the table before, only the services it
   * names are looked at; otherwise (the first table, a change from another version) the whole table.
   */
  retain(table: RoutingTable, change?: TableChange): void {
    const previous = this.table;
    this.table = table;
    if (!previous || !change || change.from !== previous.version) {
      if (previous) {
        for (const [id, before] of previous.services) this.noteLeft(id, before, table.services.get(id), table.version);
      }
      this.listed.clear();
      for (const s of table.services.values()) this.count(s, 1);
      for (const scopes of this.down.values()) {
        for (const [scope, keys] of [...scopes]) this.prune(scopes, scope, keys);
      }
      this.dropEmpty();
      return;
    }
    const changed = new Set<string>();
    const unlisted = new Set<string>();
    for (const id of [...change.upserted, ...change.removed]) {
      const before = previous.services.get(id);
      const after = table.services.get(id);
      if (before === after) continue;
      changed.add(id);
      if (before) this.noteLeft(id, before, after, table.version);
      if (after) this.count(after, 1);
      if (before) for (const key of this.count(before, -1)) unlisted.add(key);
    }
    if (this.down.size === 0) return;
    for (const scopes of this.down.values()) {
      for (const id of changed) {
        const keys = scopes.get(id);
        if (keys) this.prune(scopes, id, keys);
      }
      const perEndpoint = scopes.get(PER_ENDPOINT);
      if (perEndpoint) {
        for (const key of unlisted) if (!this.listed.has(key)) perEndpoint.delete(key);
        if (perEndpoint.size === 0) scopes.delete(PER_ENDPOINT);
      }
    }
    this.dropEmpty();
  }

  /**
   * Take a verdict of the leader. Returns whether the other workers should be handed it: not when its
   * endpoint is not checked in the table (dropped), nor when it is a DOWN already known.
   */
  record(v: PlaneVerdict): boolean {
    const scope = v.serviceId ?? PER_ENDPOINT;
    if (!this.checked(scope, v.key) || this.left.has(`${scope} ${v.key}`)) return false;
    let scopes = this.down.get(v.plane);
    let keys = scopes?.get(scope);
    if (v.up) {
      if (keys?.delete(v.key)) {
        if (keys.size === 0) scopes!.delete(scope);
        if (scopes!.size === 0) this.down.delete(v.plane);
      }
      return true;
    }
    const known = keys?.has(v.key) ?? false;
    if (!scopes) this.down.set(v.plane, (scopes = new Map()));
    if (!keys) scopes.set(scope, (keys = new Map()));
    keys.set(v.key, v.reason);
    return !known;
  }

  /** The leader applied `version`: its verdicts from now on are about checks of that table or a later one. */
  leaderApplied(version: number): void {
    for (const [k, v] of this.left) if (v <= version) this.left.delete(k);
  }

  /** A new leader process: it starts from the table it is handed, knowing no check before it. */
  leaderStarted(): void {
    this.left.clear();
  }

  /** Every DOWN verdict kept, for a worker that starts. */
  replay(): PlaneVerdict[] {
    const out: PlaneVerdict[] = [];
    for (const [plane, scopes] of this.down) {
      for (const [scope, keys] of scopes) {
        for (const [key, reason] of keys) {
          out.push({
            plane,
            ...(scope !== PER_ENDPOINT && { serviceId: scope }),
            key,
            up: false,
            ...(reason !== undefined && { reason }),
          });
        }
      }
    }
    return out;
  }

  /** Whether the table checks endpoint `key` in `scope`: a service with a check that lists it, or any service that lists it. */
  private checked(scope: string, key: string): boolean {
    if (!this.table) return false;
    if (scope === PER_ENDPOINT) return this.listed.has(key);
    const s = this.table.services.get(scope);
    return s?.health !== undefined && s.endpoints.some((ep) => keyOf(ep) === key);
  }

  /** Drop the verdicts of `scope` the table no longer checks. */
  private prune(scopes: PlaneDown, scope: string, keys: Map<string, string | undefined>): void {
    if (scope === PER_ENDPOINT) {
      for (const key of [...keys.keys()]) if (!this.listed.has(key)) keys.delete(key);
    } else {
      const s = this.table?.services.get(scope);
      const have = s?.health ? new Set(s.endpoints.map(keyOf)) : undefined;
      for (const key of [...keys.keys()]) if (!have?.has(key)) keys.delete(key);
    }
    if (keys.size === 0) scopes.delete(scope);
  }

  /** Note the endpoints of `before`'s check (service `id`) that `after` does not check. */
  private noteLeft(id: string, before: Service, after: Service | undefined, version: number): void {
    if (!before.health) return;
    const kept = after?.health ? new Set(after.endpoints.map(keyOf)) : undefined;
    for (const ep of before.endpoints) {
      const key = keyOf(ep);
      if (!kept?.has(key)) this.left.set(`${id} ${key}`, version);
    }
  }

  private dropEmpty(): void {
    for (const [plane, scopes] of [...this.down]) if (scopes.size === 0) this.down.delete(plane);
  }

  /** Count service `s`'s endpoints in (+1) or out (-1); returns the keys that went to no service. */
  private count(s: Service, by: 1 | -1): string[] {
    const gone: string[] = [];
    const seen = new Set<string>();
    for (const ep of s.endpoints) {
      const key = keyOf(ep);
      if (seen.has(key)) continue; // listed twice in one service: counted once
      seen.add(key);
      const n = (this.listed.get(key) ?? 0) + by;
      if (n > 0) this.listed.set(key, n);
      else {
        this.listed.delete(key);
        gone.push(key);
      }
    }
    return gone;
  }
}
