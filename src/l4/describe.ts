/**
 * The L4 plane's api view (`GET /v1/vips`): each VIP and SNI-passthrough entrypoint of the table it
 * serves, the listener it is bound to (or why it is not), its endpoints with their state, and its
 * counters. `describeL4` reads what the plane hands it and changes nothing.
 */
import type { VipEntry } from '../model/types.js';
import type { L4Balance } from './options.js';
import type { ServicePool } from './pool.js';
import type { FrontStats } from './types.js';

/** How a VIP is bound: on its own address, or on `vips.listen`. */
export type VipBinding = 'vip-address' | 'listen-address';

/** What the view reads of one bound listener. */
export interface DescribedListener {
  spec: { key: string; protocol: 'tcp' | 'udp'; binding: VipBinding | 'entrypoint' };
  /** Actual bound address, `host:port`. */
  address: string;
  /** Bound on vips.listen after EADDRNOTAVAIL on the VIP address. */
  fellBack: boolean;
}

/** What the view reads of one VIP or passthrough entrypoint of the table. */
export interface DescribedFront {
  spec?: { sniRoutes?: ReadonlyArray<{ host: string; service: string }> };
  vip?: VipEntry;
  entrypoint?: string;
  /** Why it is not served (no address yet, port conflict, bad listen address). */
  skipped?: string;
}

/** The plane's state the view is made from (sessions already flushed into `stats`). */
export interface L4DescribeInput {
  now: number;
  version: number;
  listenAddress: string;
  /** The selection a VIP without a pool yet reports (options.balance). */
  defaultBalance: L4Balance;
  /** By VIP key / `sni/<entrypoint>`, in table order. */
  views: ReadonlyMap<string, DescribedFront>;
  listeners: Iterable<DescribedListener>;
  /** Listener errors by front key. */
  listenErrors: ReadonlyMap<string, string>;
  pools: ReadonlyMap<string, ServicePool>;
  stats: ReadonlyMap<string, FrontStats>;
}

/** The VIPs and passthrough entrypoints of the current table, with their listeners, endpoints and counters. */
export function describeL4(x: L4DescribeInput): L4Description {
  const now = x.now;
  const byFront = new Map<string, DescribedListener>();
  for (const l of x.listeners) byFront.set(l.spec.key, l);
  const endpoints = (pool: ServicePool | undefined): L4EndpointView[] => {
    if (!pool) return [];
    const ms = [...pool.members.values()].sort((a, b) =>
      a.backend.address < b.backend.address ? -1 : a.backend.address > b.backend.address ? 1 : a.backend.port - b.backend.port,
    );
    return ms.map((m) => ({
      address: m.backend.address,
      port: m.backend.port,
      weight: m.weight,
      health: m.present ? m.health : 'removed',
      state: m.state(now),
      activeCheck: m.backend.checkUp === undefined ? 'none' : m.backend.checkUp ? 'up' : 'down',
      active: m.active,
      connections: m.backend.connections,
      bytes: { in: m.backend.bytesIn, out: m.backend.bytesOut },
      failures: { connect: m.backend.connectFailures, timeout: m.backend.connectTimeouts },
    }));
  };
  const counters = (key: string): Pick<L4VipView, 'connections' | 'bytes' | 'rejected' | 'udp'> => {
    const st = x.stats.get(key);
    return {
      connections: { active: st?.active ?? 0, total: st?.connections ?? 0 },
      bytes: { in: st?.bytesIn ?? 0, out: st?.bytesOut ?? 0 },
      rejected: Object.fromEntries(st?.rejected ?? []),
      udp: { flows: st?.flows ?? 0, datagramsIn: st?.datagramsIn ?? 0, datagramsOut: st?.datagramsOut ?? 0 },
    };
  };
  const vips: L4VipView[] = [];
  const sni: L4SniView[] = [];
  for (const [key, view] of x.views) {
    const l = byFront.get(key);
    const listener = l ? `${view.entrypoint !== undefined ? 'tls' : l.spec.protocol} ${l.address}` : null;
    const error = view.skipped ?? x.listenErrors.get(key);
    if (view.vip) {
      const v = view.vip;
      const pool = x.pools.get(v.service);
      const { udp, ...tcpCounters } = counters(key);
      const out: L4VipView = {
        key,
        protocol: v.protocol,
        ...(v.name !== undefined ? { name: v.name } : {}),
        framework: v.framework,
        ...(v.address !== undefined ? { address: v.address } : {}),
        ip: v.ip ?? v.address ?? null,
        port: v.port,
        service: v.service,
        ...(v.proxyProtocol ? { proxyProtocol: v.proxyProtocol } : {}),
        balance: pool?.algorithm ?? x.defaultBalance,
        listener,
        binding: l ? (l.fellBack ? 'listen-address' : (l.spec.binding as VipBinding)) : null,
        ...(error ? { error } : {}),
        ...tcpCounters,
        ...(v.protocol === 'udp' ? { udp } : {}),
        endpoints: endpoints(pool),
      };
      vips.push(out);
    } else {
      const routes = view.spec?.sniRoutes ?? [];
      const { udp: _none, ...tcpCounters } = counters(key);
      sni.push({
        entrypoint: view.entrypoint as string,
        listener,
        ...(error ? { error } : {}),
        ...tcpCounters,
        routes: routes.map((r) => ({ host: r.host, service: r.service, endpoints: endpoints(x.pools.get(r.service)) })),
      });
    }
  }
  return { version: x.version, listenAddress: x.listenAddress, vips, sni };
}

export interface L4EndpointView {
  address: string;
  port: number;
  weight: number;
  /** Health the table gives (`removed`: no longer listed, draining out). */
  health: string;
  state: string;
  /** The active check's verdict: `none` before the first one, or when checks are off. */
  activeCheck: 'none' | 'up' | 'down';
  /** Connections and flows open through this pool. */
  active: number;
  /** Established to this endpoint, ever (all pools). */
  connections: number;
  bytes: { in: number; out: number };
  failures: { connect: number; timeout: number };
}

export interface L4VipView {
  key: string;
  protocol: 'tcp' | 'udp';
  name?: string;
  framework: string;
  address?: string;
  /** The address the VIP is served on (the allocator's for named VIPs); null while none is allocated. */
  ip: string | null;
  port: number;
  service: string;
  proxyProtocol?: 'v1' | 'v2';
  balance: L4Balance;
  /** `tcp 11.0.0.7:80`, or null when not bound (see `error`). */
  listener: string | null;
  binding: VipBinding | null;
  error?: string;
  connections: { active: number; total: number };
  bytes: { in: number; out: number };
  rejected: Record<string, number>;
  udp?: { flows: number; datagramsIn: number; datagramsOut: number };
  endpoints: L4EndpointView[];
}

export interface L4SniView {
  entrypoint: string;
  listener: string | null;
  error?: string;
  routes: Array<{ host: string; service: string; endpoints: L4EndpointView[] }>;
  connections: { active: number; total: number };
  bytes: { in: number; out: number };
  rejected: Record<string, number>;
}

export interface L4Description {
  version: number;
  listenAddress: string;
  vips: L4VipView[];
  sni: L4SniView[];
}
