/**
 * The rules of the config file that span sections, which neither the schema nor one section's definition
 * can state: routes name entrypoints and services that exist, one file claims a VIP once, and no two
 * listeners would collide at bind time. (Rules within one section live beside its definition, in
 * schema.ts and the planes' settings.ts.)
 *
 * They run on the decoded config even when the schema found problems, so that one load reports
 * everything wrong with a file; a value the schema refused is missing then, and the rules skip it.
 */
import { toFrameworkName, toVipName } from '../model/names.js';
import type { Walk } from '../model/settings.js';
import { formatPath, type PathSegment } from './locate.js';
import type { PorticoConfig } from './types.js';

/** Check `cfg` (decoded from the file at `w`), reporting through `w`. */
export function checkConfig(cfg: PorticoConfig, w: Walk, extraEntrypoints: readonly string[] = []): void {
  checkReferences(cfg, w, [...Object.keys(cfg.entrypoints), ...extraEntrypoints], Object.keys(cfg.services));
  checkVips(cfg, w);
  checkListeners(cfg, w);
}

function checkReferences(cfg: PorticoConfig, w: Walk, entrypoints: string[], services: string[]): void {
  // Sets: 10,000 routes against 10,000 services is 10^8 comparisons as lists.
  const haveEntrypoint = new Set(entrypoints);
  const haveService = new Set(services);
  cfg.routes.forEach((r, i) => {
    if (r.entrypoint !== undefined && !haveEntrypoint.has(r.entrypoint)) {
      w.fail(`unknown entrypoint "${r.entrypoint}" (${known(entrypoints)})`, ['routes', i, 'entrypoint']);
    }
    if (r.service !== undefined && !haveService.has(r.service)) {
      w.fail(`unknown service "${r.service}" (${known(services)})`, ['routes', i, 'service']);
    }
  });
}

/** One file cannot claim a VIP twice, across all its services. */
function checkVips(cfg: PorticoConfig, w: Walk): void {
  const owners = new Map<string, PathSegment[]>();
  for (const [name, s] of Object.entries(cfg.services)) {
    s.vips.forEach((v, i) => {
      const at = ['services', name, 'vips', i];
      if ((v.name === undefined) === (v.address === undefined) || !(v.port > 0)) return; // reported by the VIP's own rule
      const target = v.name !== undefined ? `${toVipName(v.name)}.${toFrameworkName(s.framework)}` : (v.address as string);
      const key = `${v.protocol}/${target.includes(':') ? `[${target}]` : target}:${v.port}`;
      const first = owners.get(key);
      if (first) w.fail(`duplicate VIP ${key} (also ${formatPath(first)})`, at);
      else owners.set(key, at);
    });
  }
}

/**
 * Two TCP listeners on one port fail at bind time with EADDRINUSE, and then the appliance does not
 * start; say so at load time instead, naming both. A wildcard overlaps every address of its family,
 * and `::` overlaps IPv4 too (Node listens dual-stack). Port 0 is ephemeral: never a collision.
 */
function checkListeners(cfg: PorticoConfig, w: Walk): void {
  const listeners: Array<{ path: PathSegment[]; listen: string | undefined }> = [
    { path: ['api', 'listen'], listen: cfg.api.listen },
    { path: ['dns', 'listen'], listen: cfg.dns.listen },
    ...Object.entries(cfg.entrypoints).map(([name, e]) => ({
      path: ['entrypoints', name, 'listen'],
      listen: e.listen as string | undefined,
    })),
  ];
  const parsed = listeners
    .map((l) => ({ ...l, ...splitListen(l.listen ?? '') }))
    .filter((l): l is typeof l & { host: string; port: number } => l.host !== undefined && l.port !== undefined && l.port !== 0);
  for (let i = 1; i < parsed.length; i++) {
    const b = parsed[i] as (typeof parsed)[number];
    const a = parsed.slice(0, i).find((x) => x.port === b.port && hostsOverlap(x.host, b.host));
    if (a) w.fail(`${b.listen} collides with ${formatPath(a.path)} (${a.listen}): both would listen on TCP port ${b.port}`, b.path);
  }
}

function splitListen(listen: string): { host?: string; port?: number } {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(listen);
  return m ? { host: m[1] as string, port: Number(m[2]) } : {};
}

function hostsOverlap(a: string, b: string): boolean {
  if (a === b || a === '::' || b === '::') return true;
  const v6 = (h: string) => h.includes(':');
  return v6(a) === v6(b) && (a === '0.0.0.0' || b === '0.0.0.0');
}

function known(names: string[]): string {
  return names.length === 0 ? 'none are defined' : `defined: ${names.join(', ')}`;
}
