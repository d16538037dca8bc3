/**
 * DC/OS naming rules, as Mesos-DNS (records/labels) and dcos-net (mesos_state:domain_frag) apply them.
 *
 * - A DNS label is at most 63 bytes of [a-z0-9-], not starting or ending with `-` (RFC 1123).
 * - Task names: lower-cased, `.` and any other invalid character become `-` (Mesos-DNS).
 * - Framework names keep their dots (each part is a label of its own).
 * - VIP names: split on `.`, lower-cased, `_`/`-`/`.` become `-`, other invalid characters (incl. `/`)
 *   are dropped: `/grp/app` → `grpapp` (dcos-l4lb).
 */

export const MAX_LABEL = 63;
export const MAX_NAME = 253;

function trimLabel(s: string): string {
  let out = s.slice(0, MAX_LABEL);
  out = out.replace(/^-+/, '').replace(/-+$/, '');
  return out;
}

/** A Mesos-DNS label from any string: lower-case, invalid characters to `-`, 63 bytes at most. */
export function toLabel(input: string): string {
  return trimLabel(input.toLowerCase().replace(/[^a-z0-9-]/g, '-'));
}

/** A framework name: dots kept, each part made a label. */
export function toFrameworkName(input: string): string {
  return input
    .split('.')
    .map(toLabel)
    .filter((l) => l.length > 0)
    .join('.');
}

/** A VIP name as dcos-l4lb derives it from a `VIP_n` label's name part. */
export function toVipName(input: string): string {
  const parts = input
    .split('.')
    .map((p) =>
      trimLabel(
        p
          .toLowerCase()
          .replace(/[_.]/g, '-')
          .replace(/[^a-z0-9-]/g, ''),
      ),
    )
    .filter((p) => p.length > 0);
  return parts.join('.');
}

/** True when `name` is a syntactically valid DNS name (labels of [a-z0-9-], 63/253 limits). */
export function isValidDnsName(name: string): boolean {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > MAX_NAME) return false;
  return n.split('.').every((l) => l.length > 0 && l.length <= MAX_LABEL && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i.test(l));
}

/** True when `host` is a valid route host: a DNS name, `*.` + a DNS name, or `*`. */
export function isValidRouteHost(host: string): boolean {
  if (host === '*') return true;
  if (host.startsWith('*.')) return isValidDnsName(host.slice(2));
  return isValidDnsName(host);
}

/**
 * Split a VIP label value (`/name:port`, `name:port`, `1.2.3.4:port`, `[fd00::1]:port`) at the last colon,
 * as dcos-net does. Returns undefined when there is no valid port.
 */
export function splitVipLabel(value: string): { target: string; port: number } | undefined {
  const i = value.lastIndexOf(':');
  if (i <= 0) return undefined;
  const portText = value.slice(i + 1);
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  let target = value.slice(0, i);
  if (target.startsWith('[') && target.endsWith(']')) target = target.slice(1, -1);
  return { target, port };
}
