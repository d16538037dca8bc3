/**
 * What the Marathon translator reads of Marathon's JSON (`GET /v2/apps?embed=apps.tasks`, or an app
 * file), and the defensive readers it reads it with: only what is read is typed, everything is
 * optional, and a value of the wrong type is treated as absent (input is never trusted).
 */
import { parseAddress } from '../../model/parse.js';

// ---------------------------------------------------------------------------------------------------
// Marathon's JSON (only what is read; everything optional: input is never trusted)

export interface MarathonPortDefinition {
  port?: number;
  protocol?: string;
  name?: string;
  labels?: Record<string, string>;
}

export interface MarathonPortMapping {
  containerPort?: number;
  hostPort?: number | null;
  servicePort?: number;
  protocol?: string;
  name?: string;
  labels?: Record<string, string>;
}

export interface MarathonHealthCheck {
  protocol?: string;
  path?: string;
  portIndex?: number;
  port?: number;
  intervalSeconds?: number;
  timeoutSeconds?: number;
  gracePeriodSeconds?: number;
  maxConsecutiveFailures?: number;
}

export interface MarathonHealthResult {
  alive?: boolean;
  taskId?: string;
  instanceId?: string;
  consecutiveFailures?: number;
}

export interface MarathonTask {
  id?: string;
  appId?: string;
  host?: string;
  ports?: number[];
  ipAddresses?: Array<{ ipAddress?: string; protocol?: string }>;
  state?: string;
  slaveId?: string;
  version?: string;
  healthCheckResults?: MarathonHealthResult[];
  /** Not Marathon's: set by deployment tooling (zdd) or Portico's scheduler: no new connections. */
  draining?: boolean;
}

export interface MarathonApp {
  id?: string;
  labels?: Record<string, string>;
  ports?: number[];
  portDefinitions?: MarathonPortDefinition[] | null;
  container?: {
    type?: string;
    portMappings?: MarathonPortMapping[] | null;
    docker?: { network?: string; portMappings?: MarathonPortMapping[] | null } | null;
  } | null;
  networks?: Array<{ mode?: string; name?: string }> | null;
  ipAddress?: {
    networkName?: string;
    discovery?: { ports?: Array<{ number?: number; name?: string; protocol?: string; labels?: Record<string, string> }> };
  } | null;
  healthChecks?: MarathonHealthCheck[] | null;
  tasks?: MarathonTask[] | null;
}

// ---------------------------------------------------------------------------------------------------
// Small readers (defensive: Marathon JSON, or a hand-written file, may hold anything)

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function stringRecord(v: unknown): Record<string, string> {
  if (!isObject(v)) return {};
  let clean = true;
  for (const k in v)
    if (typeof v[k] !== 'string') {
      clean = false;
      break;
    }
  if (clean) return v as Record<string, string>;
  const out: Record<string, string> = {};
  for (const k in v) {
    const x = v[k];
    if (typeof x === 'string') out[k] = x;
    else if (typeof x === 'number' || typeof x === 'boolean') out[k] = String(x);
  }
  return out;
}

export function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

export function asArray<T>(v: unknown): T[] {
  return Array.isArray(v) ? (v as T[]) : [];
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** A normalised IP from text, or undefined. Dotted quads (the common case) skip ipaddr. */
export function normaliseIp(text: string): string | undefined {
  if (V4.test(text)) return text;
  const a = parseAddress(text);
  return a.ok ? a.value : undefined;
}
