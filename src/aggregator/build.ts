/**
 * The pure part of the aggregator: merge every provider's latest snapshot into one table's content.
 * Same inputs (in any arrival order) → same content → same hash. No I/O, no clock but `createdAt`.
 *
 * Conflicts (two providers claiming one route key, one VIP, one DNS name, one entrypoint) are decided by
 * provider priority — higher wins, ties go to the lexically smaller provider name so the outcome never
 * depends on arrival order — and every one is reported in `conflicts`.
 */
import { createHash } from 'node:crypto';
import type {
  Conflict,
  ConflictKind,
  Endpoint,
  Entrypoint,
  Route,
  RoutingTable,
  Service,
  Snapshot,
  TableWarning,
  VipEntry,
} from '../model/types.js';

export interface ProviderInput {
  priority: number;
  snapshot: Snapshot;
  /** Content hash of `snapshot` (computed once when it arrived). */
  hash: string;
}

/** A table's content before it is given a version. */
export type TableContent = Omit<RoutingTable, 'version' | 'createdAt'>;

/** JSON with object keys sorted at every depth: the canonical form every hash is taken of. */
export function canonicalJson(value: unknown): string {
  const parts: string[] = [];
  writeCanonical(value, parts);
  return parts.join('');
}

function writeCanonical(v: unknown, out: string[]): void {
  if (v === null || typeof v !== 'object') {
    out.push(v === undefined ? 'null' : JSON.stringify(v));
    return;
  }
  if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      writeCanonical(v[i], out);
    }
    out.push(']');
    return;
  }
  const obj = v as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  out.push('{');
  let first = true;
  for (const k of keys) {
    const x = obj[k];
    if (x === undefined) continue;
    if (!first) out.push(',');
    first = false;
    out.push(JSON.stringify(k), ':');
    writeCanonical(x, out);
  }
  out.push('}');
}

export function hashOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

/** Providers in decision order: priority descending, then name ascending. */
function ordered(inputs: Map<string, ProviderInput>): Array<[string, ProviderInput]> {
  return [...inputs.entries()].sort((a, b) => b[1].priority - a[1].priority || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function compareEndpoints(a: Endpoint, b: Endpoint): number {
  if (a.address !== b.address) return a.address < b.address ? -1 : 1;
  return a.port - b.port;
}

function routeKey(r: { entrypoint: string; host: string; path: string; pathMatch: string; methods?: string[]; headers?: Array<{ name: string; value?: string }> }): string {
  const methods = r.methods && r.methods.length ? [...r.methods].sort().join(',') : '*';
  const headers = r.headers && r.headers.length
    ? r.headers.map((h) => `${h.name.toLowerCase()}=${h.value ?? '*'}`).sort().join('&')
    : '';
  return `${r.entrypoint} ${r.host} ${r.path} ${r.pathMatch} ${methods}${headers ? ` ${headers}` : ''}`;
}

function compareRoutes(a: Route, b: Route): number {
  if (a.entrypoint !== b.entrypoint) return a.entrypoint < b.entrypoint ? -1 : 1;
  if (a.host !== b.host) return a.host < b.host ? -1 : 1;
  if (a.path.length !== b.path.length) return b.path.length - a.path.length;
  if (a.path !== b.path) return a.path < b.path ? -1 : 1;
  if (a.pathMatch !== b.pathMatch) return a.pathMatch === 'exact' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

class ClaimBook {
  private readonly claims = new Map<string, { winner: string; losers: string[] }>();
  constructor(private readonly kind: ConflictKind) {}
  /** Returns true if `provider` wins `key` (it is the first to claim it; callers go in decision order). */
  claim(key: string, provider: string): boolean {
    const c = this.claims.get(key);
    if (!c) {
      this.claims.set(key, { winner: provider, losers: [] });
      return true;
    }
    c.losers.push(provider);
    return false;
  }
  conflicts(): Conflict[] {
    const out: Conflict[] = [];
    for (const [key, c] of this.claims) {
      if (c.losers.length === 0) continue;
      const same = c.losers.every((l) => l === c.winner);
      out.push({
        kind: this.kind,
        key,
        winner: c.winner,
        losers: c.losers,
        message: same
          ? `${this.kind} "${key}" is claimed more than once by provider ${c.winner}; the first claim is served`
          : `${this.kind} "${key}" is claimed by ${[c.winner, ...c.losers].join(', ')}; ${c.winner} has the highest priority and is served`,
      });
    }
    return out;
  }
}

export function buildContent(inputs: Map<string, ProviderInput>): TableContent {
  const order = ordered(inputs);
  const services: Record<string, Service> = {};
  const routes: Route[] = [];
  const entrypoints: Record<string, Entrypoint> = {};
  const vips: VipEntry[] = [];
  const warnings: TableWarning[] = [];
  const sources: Record<string, string> = {};
  const routeBook = new ClaimBook('route');
  const vipBook = new ClaimBook('vip');
  const dnsBook = new ClaimBook('dns');
  const epBook = new ClaimBook('entrypoint');

  for (const [provider, input] of order) {
    sources[provider] = input.hash;
    const snap = input.snapshot;

    for (const name of Object.keys(snap.services).sort()) {
      const s = snap.services[name] as Omit<Service, 'id' | 'provider'>;
      const id = `${name}@${provider}`;
      const service: Service = {
        name,
        id,
        provider,
        framework: s.framework,
        endpoints: [...s.endpoints].sort(compareEndpoints),
        balance: s.balance,
        vips: s.vips,
        labels: s.labels,
      };
      if (s.health) service.health = s.health;
      if (!dnsBook.claim(`${name}.${s.framework}`, provider)) service.dnsHidden = true;
      services[id] = service;

      for (const v of s.vips) {
        const target = v.name !== undefined ? `${v.name}.${s.framework}` : (v.address as string);
        const key = `${v.protocol}/${target.includes(':') ? `[${target}]` : target}:${v.port}`;
        if (!vipBook.claim(key, provider)) continue;
        const entry: VipEntry = { key, protocol: v.protocol, framework: s.framework, port: v.port, service: id };
        if (v.name !== undefined) entry.name = v.name;
        if (v.address !== undefined) entry.address = v.address;
        if (v.proxyProtocol !== undefined) entry.proxyProtocol = v.proxyProtocol;
        vips.push(entry);
        if (s.endpoints.length === 0) warnings.push({ provider, subject: key, message: `VIP ${key} has no endpoints` });
      }
    }

    for (const name of Object.keys(snap.entrypoints).sort()) {
      if (epBook.claim(name, provider)) entrypoints[name] = snap.entrypoints[name] as Entrypoint;
    }

    snap.routes.forEach((r, index) => {
      const id = r.id ?? `${provider}/${index}`;
      if (!routeBook.claim(routeKey(r), provider)) return;
      const service = r.service.includes('@') ? r.service : `${r.service}@${provider}`;
      routes.push({ ...r, id, provider, service });
    });
  }

  for (const r of routes) {
    if (!services[r.service]) {
      warnings.push({ provider: r.provider, subject: r.id, message: `route ${r.id} names service ${r.service}, which no provider has; it answers 503` });
    }
    if (!entrypoints[r.entrypoint]) {
      warnings.push({ provider: r.provider, subject: r.id, message: `route ${r.id} names entrypoint ${r.entrypoint}, which is not defined; it is not served` });
    }
  }

  routes.sort(compareRoutes);
  vips.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const conflicts = [...routeBook.conflicts(), ...vipBook.conflicts(), ...dnsBook.conflicts(), ...epBook.conflicts()];
  const sortedServices: Record<string, Service> = {};
  for (const id of Object.keys(services).sort()) sortedServices[id] = services[id] as Service;

  const content: Omit<TableContent, 'hash'> = { services: sortedServices, routes, entrypoints, vips, conflicts, warnings, sources };
  return { ...content, hash: hashOf({ services: sortedServices, routes, entrypoints, vips, conflicts, warnings }) };
}

/** Freeze a table and everything in it: a data plane that tried to mutate it would throw in strict mode. */
export function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || Object.isFrozen(v)) continue;
    Object.freeze(v);
    for (const k of Object.keys(v as object)) stack.push((v as Record<string, unknown>)[k]);
  }
  return value;
}
