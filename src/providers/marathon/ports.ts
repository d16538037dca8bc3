/**
 * An app's ports, as marathon-lb reads them: the networking mode, then one `PortSpec` per port index
 * from the container's port mappings, Marathon <=1.4's `ipAddress.discovery.ports`, `portDefinitions`
 * or the legacy `ports`, each with its service port, protocols, name and labels; and the VIP labels on
 * a port (dcos-net).
 */
import { isIP } from 'node:net';
import { splitVipLabel, toVipName } from '../../model/names.js';
import type { Protocol, Vip } from '../../model/types.js';
import {
  asArray,
  isObject,
  isPort,
  normaliseIp,
  stringRecord,
  type MarathonApp,
  type MarathonPortDefinition,
  type MarathonPortMapping,
} from './json.js';

/** How an app's tasks are reached: on the agent's ports, on a container network, or bridged. */
export type NetMode = 'host' | 'container' | 'container/bridge';

/** One port of an app, by port index. */
export interface PortSpec {
  index: number;
  servicePort: number;
  protocols: Protocol[];
  name?: string;
  labels: Record<string, string>;
  /** container mode: the port inside the container (0: same as the host port). */
  containerPort?: number;
  /** Index into task.ports for this port (host and bridge), or -1 when it has no host port. */
  hostPortIndex: number;
}

function protocolsOf(p: unknown): Protocol[] {
  if (typeof p !== 'string' || p === '') return ['tcp'];
  const out: Protocol[] = [];
  for (const part of p.toLowerCase().split(',')) {
    const t = part.trim();
    if ((t === 'tcp' || t === 'udp') && !out.includes(t)) out.push(t);
  }
  return out.length > 0 ? out : ['tcp'];
}

// ---------------------------------------------------------------------------------------------------
// Networking (marathon-lb utils.py: get_app_networking_mode, get_app_port_mappings, get_app_task_ports)

export function networkingMode(app: MarathonApp): NetMode {
  let mode: NetMode = 'host';
  if (isObject(app.ipAddress)) mode = 'container';
  const docker = isObject(app.container) && isObject(app.container.docker) ? app.container.docker : undefined;
  if (docker?.network === 'USER') mode = 'container';
  else if (docker?.network === 'BRIDGE') mode = 'container/bridge';
  for (const n of asArray<{ mode?: string }>(app.networks)) {
    // Modes cannot be mixed: the last one is the mode (marathon-lb).
    if (!isObject(n)) continue;
    const m = n.mode ?? 'container';
    if (m === 'host' || m === 'container' || m === 'container/bridge') mode = m;
  }
  return mode;
}

export function containerNetworkName(app: MarathonApp): string | undefined {
  for (const n of asArray<{ mode?: string; name?: string }>(app.networks)) {
    if (isObject(n) && (n.mode ?? 'container') === 'container' && typeof n.name === 'string' && n.name !== '') return n.name;
  }
  if (isObject(app.ipAddress) && typeof app.ipAddress.networkName === 'string' && app.ipAddress.networkName !== '')
    return app.ipAddress.networkName;
  return undefined;
}

function portMappingsOf(app: MarathonApp): MarathonPortMapping[] {
  if (!isObject(app.container)) return [];
  const docker = isObject(app.container.docker) ? asArray<MarathonPortMapping>(app.container.docker.portMappings) : [];
  if (docker.length > 0) return docker;
  return asArray<MarathonPortMapping>(app.container.portMappings);
}

/** The app's ports in port-index order, from whichever of Marathon's port lists its mode uses. */
export function portSpecs(app: MarathonApp, mode: NetMode): PortSpec[] {
  const specs: PortSpec[] = [];
  if (mode !== 'host') {
    const mappings = portMappingsOf(app);
    if (mappings.length > 0) {
      let hostIndex = 0;
      mappings.forEach((m, index) => {
        const mm = isObject(m) ? m : {};
        // Bridge mode: a null hostPort means 0 (any). Container mode: only mappings with a hostPort have
        // one in task.ports.
        const hasHostPort = mode === 'container/bridge' || typeof mm.hostPort === 'number';
        const spec: PortSpec = {
          index,
          servicePort: isPort(mm.servicePort) ? mm.servicePort : 0,
          protocols: protocolsOf(mm.protocol),
          labels: stringRecord(mm.labels),
          containerPort: typeof mm.containerPort === 'number' ? mm.containerPort : 0,
          hostPortIndex: hasHostPort ? hostIndex++ : -1,
        };
        if (typeof mm.name === 'string' && mm.name !== '') spec.name = mm.name;
        specs.push(spec);
      });
      return specs;
    }
    if (mode === 'container' && isObject(app.ipAddress) && isObject(app.ipAddress.discovery)) {
      // Marathon ≤1.4 IP-per-task: ipAddress.discovery.ports carry the container ports.
      asArray<{ number?: number; name?: string; protocol?: string; labels?: Record<string, string> }>(
        app.ipAddress.discovery.ports,
      ).forEach((p, index) => {
        const pp = isObject(p) ? p : {};
        const spec: PortSpec = {
          index,
          servicePort: 0,
          protocols: protocolsOf(pp.protocol),
          labels: stringRecord(pp.labels),
          containerPort: typeof pp.number === 'number' ? pp.number : 0,
          hostPortIndex: -1,
        };
        if (typeof pp.name === 'string' && pp.name !== '') spec.name = pp.name;
        specs.push(spec);
      });
      if (specs.length > 0) return specs;
    }
  }
  const defs = asArray<MarathonPortDefinition>(app.portDefinitions);
  if (defs.length > 0 || Array.isArray(app.portDefinitions)) {
    defs.forEach((d, index) => {
      const dd = isObject(d) ? d : {};
      const spec: PortSpec = {
        index,
        servicePort: isPort(dd.port) ? dd.port : 0,
        protocols: protocolsOf(dd.protocol),
        labels: stringRecord(dd.labels),
        hostPortIndex: index,
      };
      if (typeof dd.name === 'string' && dd.name !== '') spec.name = dd.name;
      specs.push(spec);
    });
    return specs;
  }
  // Legacy `ports: [10000, …]`.
  asArray<number>(app.ports).forEach((p, index) => {
    specs.push({ index, servicePort: isPort(p) ? p : 0, protocols: ['tcp'], labels: {}, hostPortIndex: index });
  });
  return specs;
}

// ---------------------------------------------------------------------------------------------------
// VIP labels

/** The port's VIP labels (dcos-net): any port label whose key starts with `VIP` / `vip`; unusable ones become warnings. */
export function vipsOf(spec: PortSpec, warnings: string[]): Vip[] {
  const i = spec.index;
  const vips: Vip[] = [];
  for (const key in spec.labels) {
    if (!(key.startsWith('VIP') || key.startsWith('vip'))) continue;
    const value = spec.labels[key] as string;
    const split = splitVipLabel(value.trim());
    if (!split) {
      warnings.push(`port ${i}: VIP label ${key}="${value}" is not "/name:port" or "ip:port"; ignored`);
      continue;
    }
    const ip = isIP(split.target) ? normaliseIp(split.target) : undefined;
    let vipName: string | undefined;
    if (ip === undefined) {
      vipName = toVipName(split.target);
      if (vipName === '') {
        warnings.push(`port ${i}: VIP label ${key}="${value}" has no usable name; ignored`);
        continue;
      }
    }
    for (const protocol of spec.protocols) {
      const v: Vip =
        ip !== undefined ? { address: ip, port: split.port, protocol } : { name: vipName as string, port: split.port, protocol };
      vips.push(v);
    }
  }
  return vips;
}
