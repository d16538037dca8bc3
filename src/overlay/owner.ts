/**
 * Who a container lease is for: the service, task and framework it runs, and the ports it listens on.
 * The runtime tells the plugin (the plugin forwards what it got, untouched; this is read in the daemon
 * at ADD time and kept in the Attachment), and the overlay provider turns it into endpoints — container
 * address × port — so `<task>.<framework>.containerip.dcos.thisdcos.directory` and the other task names
 * resolve to container addresses, and L4/L7 can route to them.
 *
 * Sources, the first that names a field wins (ports: the first source that declares any):
 *   1. CNI_ARGS (CNI convention `K=V;K2=V2`, with `IgnoreUnknown=1` for plugins that reject unknown keys):
 *        PORTICO_SERVICE=web        service (default: the task)
 *        PORTICO_TASK=web-1         Mesos-style task name, for DNS (default: the service)
 *        PORTICO_TASK_ID=web.1a2b   unique task id (default: the container id)
 *        PORTICO_FRAMEWORK=marathon DNS framework (default: the provider's, `overlay`)
 *        PORTICO_PORTS=http:8080/tcp,dns:53/udp,9090   container ports: `[name:]port[/tcp|/udp]`, tcp by default
 *   2. the network config's `args.portico` (CNI convention: runtime-supplied `args`, namespaced):
 *        { "service": "web", "task": "web-1", "taskId": "…", "framework": "marathon",
 *          "ports": [ { "name": "http", "port": 8080, "protocol": "tcp" }, "dns:53/udp" ] }
 *   3. `runtimeConfig.portMappings` (the CNI portMap capability, what containerd/CRI pass):
 *        [ { "hostPort": 31000, "containerPort": 8080, "protocol": "tcp" } ]  → container port 8080
 *   4. Mesos' CNI isolator (and so DC/OS): `args["org.apache.mesos"].network_info`, the NetworkInfo the
 *      framework set (mesos docs/cni.md, "Passing network labels and port-mapping information"):
 *        labels.labels: [ { "key": "PORTICO_SERVICE", "value": "web" }, … ]  the same keys as CNI_ARGS
 *        port_mappings: [ { "host_port": 31000, "container_port": 8080, "protocol": "tcp" } ]
 * A port declared twice (`53/tcp` and `53/udp`) is one port with protocol `tcp,udp`.
 *
 * Malformed metadata refuses the ADD with a clear error (CNI code 4 for CNI_ARGS, 7 for the config):
 * a container that would silently get no DNS name is worse than one that does not start.
 */
import { CniCode } from './cni/protocol.js';
import { CniFailure } from './failure.js';

export type PortProtocol = 'tcp' | 'udp' | 'tcp,udp';

export interface OwnerPort {
  /** Port name (`http`), if declared. */
  name?: string;
  /** Container port. */
  port: number;
  protocol: PortProtocol;
}

export interface AttachmentOwner {
  service?: string;
  task?: string;
  taskId?: string;
  framework?: string;
  /** Container ports, in declaration order (their index names the service: `<service>-<index>`). */
  ports: OwnerPort[];
}

/** The CNI_ARGS keys (and Mesos network labels) read here. */
export const OWNER_KEYS = {
  service: 'PORTICO_SERVICE',
  task: 'PORTICO_TASK',
  taskId: 'PORTICO_TASK_ID',
  framework: 'PORTICO_FRAMEWORK',
  ports: 'PORTICO_PORTS',
} as const;

/** Service, task and framework names: what DNS labels and table ids are made of. */
const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?$/;
/** Task ids: Marathon's `app.uuid`, Mesos' `app.instance-uuid._app.1`; printable, no spaces. */
const ID_RE = /^[\x21-\x7e]{1,255}$/;
const PORT_NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const PORT_SPEC_RE = /^(?:([^:/\s]+):)?(\d{1,5})(?:\/([A-Za-z]+))?$/;

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

type Fail = (msg: string, details: string) => CniFailure;
const envFail: Fail = (msg, details) => new CniFailure(CniCode.INVALID_ENV, msg, details);
const cfgFail: Fail = (msg, details) => new CniFailure(CniCode.INVALID_CONFIG, msg, details);

function checkName(
  v: unknown,
  where: string,
  fail: Fail,
  re = NAME_RE,
  what = 'a name of letters, digits, "_", "." and "-" (at most 253), starting and ending with a letter or digit',
): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !re.test(v)) throw fail(`${where} must be ${what}, not ${JSON.stringify(v)}`, where);
  return v;
}

function checkPort(n: unknown, where: string, fail: Fail): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535)
    throw fail(`${where} must be a port number 1..65535, not ${JSON.stringify(n)}`, where);
  return n;
}

function checkProtocol(p: unknown, where: string, fail: Fail): 'tcp' | 'udp' {
  if (p === undefined) return 'tcp';
  const v = typeof p === 'string' ? p.toLowerCase() : p;
  if (v !== 'tcp' && v !== 'udp') throw fail(`${where} must be "tcp" or "udp", not ${JSON.stringify(p)}`, where);
  return v;
}

/** `[name:]port[/proto]`. */
function parsePortSpec(text: string, where: string, fail: Fail): OwnerPort {
  const m = PORT_SPEC_RE.exec(text.trim());
  if (!m) throw fail(`${where}: ${JSON.stringify(text)} is not a port ("[name:]port[/tcp|/udp]", e.g. "http:8080/tcp")`, where);
  const name = checkName(m[1], `${where} name`, fail, PORT_NAME_RE, 'a port name of letters, digits, "_" and "-" (at most 63)');
  const port = checkPort(Number(m[2]), where, fail);
  const protocol = checkProtocol(m[3], where, fail);
  return { ...(name !== undefined ? { name } : {}), port, protocol };
}

/** Merge a port list: the same port twice becomes one with both protocols; the first name stays. */
function mergePorts(ports: OwnerPort[]): OwnerPort[] {
  const out: OwnerPort[] = [];
  for (const p of ports) {
    const prev = out.find((o) => o.port === p.port);
    if (!prev) {
      out.push({ ...p });
      continue;
    }
    if (prev.protocol !== p.protocol) prev.protocol = 'tcp,udp';
    if (prev.name === undefined && p.name !== undefined) prev.name = p.name;
  }
  return out;
}

interface Said {
  service?: string;
  task?: string;
  taskId?: string;
  framework?: string;
  ports?: OwnerPort[];
}

/** PORTICO_* keys out of a `K=V` map (CNI_ARGS or Mesos labels). */
function fromKeyValues(kv: Map<string, string>, where: string, fail: Fail): Said {
  const out: Said = {};
  const name = (k: string) => checkName(kv.get(k), `${where} ${k}`, fail);
  const service = name(OWNER_KEYS.service);
  const task = name(OWNER_KEYS.task);
  const framework = name(OWNER_KEYS.framework);
  const taskId = checkName(
    kv.get(OWNER_KEYS.taskId),
    `${where} ${OWNER_KEYS.taskId}`,
    fail,
    ID_RE,
    'printable characters with no spaces (at most 255)',
  );
  if (service !== undefined) out.service = service;
  if (task !== undefined) out.task = task;
  if (taskId !== undefined) out.taskId = taskId;
  if (framework !== undefined) out.framework = framework;
  const ports = kv.get(OWNER_KEYS.ports);
  if (ports !== undefined) {
    const w = `${where} ${OWNER_KEYS.ports}`;
    out.ports = ports.trim() === '' ? [] : ports.split(',').map((p) => parsePortSpec(p, w, fail));
  }
  return out;
}

export function parseCniArgs(args: string | undefined): Map<string, string> {
  const kv = new Map<string, string>();
  for (const part of (args ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim();
    if (!kv.has(k)) kv.set(k, part.slice(eq + 1));
  }
  return kv;
}

function fromPorticoArgs(v: unknown): Said {
  const where = 'args.portico';
  if (v === undefined) return {};
  const r = asRecord(v);
  if (!r) throw cfgFail(`${where} must be an object`, where);
  const out: Said = {};
  const service = checkName(r.service, `${where}.service`, cfgFail);
  const task = checkName(r.task, `${where}.task`, cfgFail);
  const framework = checkName(r.framework, `${where}.framework`, cfgFail);
  const taskId = checkName(r.taskId, `${where}.taskId`, cfgFail, ID_RE, 'printable characters with no spaces (at most 255)');
  if (service !== undefined) out.service = service;
  if (task !== undefined) out.task = task;
  if (taskId !== undefined) out.taskId = taskId;
  if (framework !== undefined) out.framework = framework;
  if (r.ports !== undefined) {
    if (!Array.isArray(r.ports)) throw cfgFail(`${where}.ports must be a list of ports`, `${where}.ports`);
    out.ports = r.ports.map((p, i) => {
      const w = `${where}.ports[${i}]`;
      if (typeof p === 'string') return parsePortSpec(p, w, cfgFail);
      const pr = asRecord(p);
      if (!pr) throw cfgFail(`${w} must be {"port": N, "name": "…", "protocol": "tcp"|"udp"} or "name:port/proto"`, w);
      const name = checkName(pr.name, `${w}.name`, cfgFail, PORT_NAME_RE, 'a port name of letters, digits, "_" and "-" (at most 63)');
      return {
        ...(name !== undefined ? { name } : {}),
        port: checkPort(pr.port, `${w}.port`, cfgFail),
        protocol: checkProtocol(pr.protocol, `${w}.protocol`, cfgFail),
      };
    });
  }
  return out;
}

/** Container ports of a port-mapping list (`containerPort`/`container_port`); a mapping without one is refused. */
function fromMappings(v: unknown, where: string, key: 'containerPort' | 'container_port'): OwnerPort[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw cfgFail(`${where} must be a list of port mappings`, where);
  return v.map((m, i) => {
    const r = asRecord(m);
    const w = `${where}[${i}]`;
    if (!r) throw cfgFail(`${w} must be an object`, w);
    return { port: checkPort(r[key], `${w}.${key}`, cfgFail), protocol: checkProtocol(r.protocol, `${w}.protocol`, cfgFail) };
  });
}

/** Mesos' NetworkInfo labels as a K=V map (`{labels: {labels: [{key, value}]}}`). */
function mesosLabels(ni: Record<string, unknown>, where: string): Map<string, string> {
  const kv = new Map<string, string>();
  const outer = asRecord(ni.labels);
  if (ni.labels !== undefined && !outer) throw cfgFail(`${where}.labels must be an object`, `${where}.labels`);
  const list = outer?.labels;
  if (list === undefined) return kv;
  if (!Array.isArray(list)) throw cfgFail(`${where}.labels.labels must be a list`, `${where}.labels.labels`);
  for (const l of list) {
    const r = asRecord(l);
    if (r && typeof r.key === 'string' && typeof r.value === 'string' && !kv.has(r.key)) kv.set(r.key, r.value);
  }
  return kv;
}

/**
 * The owner of an ADD, from CNI_ARGS and the config; undefined when no source says anything (a plain
 * CNI_ARGS `IP=…` or none). Throws CniFailure on malformed metadata.
 */
export function ownerOf(config: Record<string, unknown>, cniArgs: string | undefined): AttachmentOwner | undefined {
  const parts: Said[] = [fromKeyValues(parseCniArgs(cniArgs), 'CNI_ARGS', envFail)];
  const args = asRecord(config.args);
  if (config.args !== undefined && !args) throw cfgFail('"args" must be an object', 'args');
  parts.push(fromPorticoArgs(args?.portico));
  const rc = asRecord(config.runtimeConfig);
  const mapped = fromMappings(rc?.portMappings, 'runtimeConfig.portMappings', 'containerPort');
  if (mapped) parts.push({ ports: mapped });
  const mesos = asRecord(args?.['org.apache.mesos']);
  const ni = asRecord(mesos?.network_info);
  if (ni) {
    const where = 'args["org.apache.mesos"].network_info';
    parts.push(fromKeyValues(mesosLabels(ni, where), `${where} labels`, cfgFail));
    const pm = fromMappings(ni.port_mappings, `${where}.port_mappings`, 'container_port');
    if (pm) parts.push({ ports: pm });
  }
  const owner: AttachmentOwner = { ports: [] };
  let said = false;
  let portsSet = false;
  for (const p of parts) {
    for (const k of ['service', 'task', 'taskId', 'framework'] as const) {
      if (p[k] !== undefined && owner[k] === undefined) {
        owner[k] = p[k];
        said = true;
      }
    }
    if (p.ports !== undefined && !portsSet && p.ports.length > 0) {
      owner.ports = mergePorts(p.ports);
      portsSet = true;
      said = true;
    }
  }
  return said ? owner : undefined;
}
