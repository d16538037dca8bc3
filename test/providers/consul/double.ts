/**
 * A Consul HTTP api double. No Consul binary can be installed on this machine, so the provider is tested
 * against this: a real HTTP server on 127.0.0.1:<ephemeral> that implements the two endpoints the provider
 * uses as Consul documents them (developer.hashicorp.com/consul/api-docs: catalog, health, features/blocking)
 * and as Consul's server code behaves (agent/consul/rpc.go blockingQuery):
 *
 * - `GET /v1/catalog/services` → `{ "<name>": [tag union] }`, the `consul` service itself included;
 * - `GET /v1/health/service/<name>` → `[{ Node, Service, Checks }]`, Checks = node checks (serfHealth) + the
 *   instance's own; `?passing` (bare or a bool) keeps only entries whose every check is `passing`;
 * - `X-Consul-Index` on every answer (never below 1), plus `X-Consul-KnownLeader` / `X-Consul-LastContact`;
 * - blocking: with `?index=N` (N > 0) the answer waits while the query's index ≤ N, until a write raises it,
 *   the `wait` (Go duration: `500ms`, `5s`, `1m30s`; default 5m, max 10m, + up to wait/16 jitter) elapses,
 *   or the state is restored from a snapshot (then blocked queries return at once, with the lower index);
 *   `index=0` or none is a plain read. Bad `index`/`wait` → 400;
 * - indexes as Consul's state store keeps them: one raft index bumped per write; the catalog query's index is
 *   the services table's, a service's health query's is that service's (a check or node change touching it
 *   raises it; an unknown service answers with the services table's index);
 * - ACLs (when `acl` is given, default deny): token from `X-Consul-Token` (or `?token=`, or
 *   `Authorization: Bearer`); an unknown token → 403 `ACL not found`; a known one sees the services its
 *   prefixes allow, the rest are filtered out with `X-Consul-Results-Filtered-By-ACLs: true` (Consul filters
 *   lists rather than refusing them); no token → the anonymous policy;
 * - `?dc=` other than its own → 500 `No path to datacenter`.
 *
 * Test hooks: register/deregister instances, set check and node health, `resetIndex` (a snapshot restore:
 * every index drops), `failWith` (e.g. 500 `No cluster leader`), `down`/`up` (close the listener and every
 * socket, so connections are refused; then listen again on the same port), a `zeroIndex` quirk (an old
 * Consul bug the docs warn about), and a log of every request with its token, index and wait.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type CheckStatus = 'passing' | 'warning' | 'critical' | 'maintenance';

export interface RegisterOptions {
  name: string;
  /** Default: the name (one instance per node). */
  id?: string;
  node?: string;
  /** Node address when the node is new. Default 127.0.0.1. */
  nodeAddress?: string;
  /** '' (the default) means "use the node's address". */
  address?: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  kind?: string;
  weights?: { Passing: number; Warning: number };
  /** The instance's checks: id → status. Default one `service:<id>` check, passing. */
  checks?: Record<string, CheckStatus>;
}

export interface AclOptions {
  /** Secret → service name prefixes the token may read (`''` = all). */
  tokens: Record<string, string[]>;
  /** What a request without a token may read. Default nothing. */
  anonymous?: string[];
}

export interface DoubleOptions {
  datacenter?: string;
  acl?: AclOptions;
}

export interface RequestRecord {
  path: string;
  query: Record<string, string>;
  /** The token as received (tests check it was sent; the double is the only place it is kept). */
  token: string | undefined;
  at: number;
  status?: number;
  /** Answered because the wait elapsed. */
  timedOut?: boolean;
  blocked?: boolean;
}

interface Node {
  name: string;
  address: string;
  serf: CheckStatus;
  index: number;
}

interface Instance {
  node: string;
  id: string;
  name: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  kind: string;
  weights: { Passing: number; Warning: number };
  checks: Map<string, { status: CheckStatus; index: number }>;
  createIndex: number;
  modifyIndex: number;
}

export class ConsulDouble extends EventEmitter {
  readonly datacenter: string;
  readonly requests: RequestRecord[] = [];
  /** Raft index: bumped on every write. */
  index = 1;
  quirks = { zeroIndex: false };
  port = 0;
  /** Requests waiting in a blocking query now. */
  blocking = 0;

  private readonly acl: AclOptions | undefined;
  private readonly nodes = new Map<string, Node>();
  private readonly instances = new Map<string, Instance>();
  private servicesIndex = 1;
  private readonly serviceIndex = new Map<string, number>();
  private failure: { status: number; body: string } | undefined;
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private isDown = false;

  private constructor(opts: DoubleOptions) {
    super();
    this.setMaxListeners(0);
    this.datacenter = opts.datacenter ?? 'dc1';
    this.acl = opts.acl;
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => {
        this.sockets.delete(s);
        this.emit('socket-closed');
      });
    });
    // Consul's own servers register the `consul` service (server RPC, port 8300).
    this.registerNode('consul-server-1', '127.0.0.1');
    this.register({ name: 'consul', node: 'consul-server-1', port: 8300, checks: {} });
  }

  static async start(opts: DoubleOptions = {}): Promise<ConsulDouble> {
    const d = new ConsulDouble(opts);
    await d.listen(0);
    return d;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get openSockets(): number {
    return this.sockets.size;
  }

  // ----------------------------------------------------------------------------------------------
  // Hooks

  registerNode(name: string, address: string): void {
    this.write(() => {
      this.nodes.set(name, { name, address, serf: 'passing', index: this.index });
      return { services: [...this.instances.values()].filter((i) => i.node === name).map((i) => i.name), catalog: false };
    });
  }

  /** Register (or re-register: same node + id) an instance, as `PUT /v1/catalog/register` would. */
  register(o: RegisterOptions): void {
    const node = o.node ?? 'node1';
    if (!this.nodes.has(node)) this.registerNode(node, o.nodeAddress ?? '127.0.0.1');
    const id = o.id ?? o.name;
    const key = `${node}/${id}`;
    this.write((index) => {
      const prev = this.instances.get(key);
      const checks = new Map<string, { status: CheckStatus; index: number }>();
      for (const [cid, status] of Object.entries(o.checks ?? { [`service:${id}`]: 'passing' as CheckStatus }))
        checks.set(cid, { status, index });
      this.instances.set(key, {
        node,
        id,
        name: o.name,
        address: o.address ?? '',
        port: o.port,
        tags: o.tags ?? [],
        meta: o.meta ?? {},
        kind: o.kind ?? '',
        weights: o.weights ?? { Passing: 1, Warning: 1 },
        checks,
        createIndex: prev?.createIndex ?? index,
        modifyIndex: index,
      });
      return { services: [o.name, ...(prev && prev.name !== o.name ? [prev.name] : [])], catalog: true };
    });
  }

  deregister(id: string, node = 'node1'): void {
    const key = `${node}/${id}`;
    const inst = this.instances.get(key);
    if (!inst) throw new Error(`no instance ${key}`);
    this.write(() => {
      this.instances.delete(key);
      return { services: [inst.name], catalog: true };
    });
  }

  /** Set one check of an instance (default: its first). */
  setCheck(id: string, status: CheckStatus, opts: { node?: string; checkId?: string } = {}): void {
    const inst = this.instances.get(`${opts.node ?? 'node1'}/${id}`);
    if (!inst) throw new Error(`no instance ${opts.node ?? 'node1'}/${id}`);
    const cid = opts.checkId ?? [...inst.checks.keys()][0] ?? `service:${id}`;
    this.write((index) => {
      inst.checks.set(cid, { status, index });
      return { services: [inst.name], catalog: false };
    });
  }

  /** The node's serfHealth check (every service on the node fails with it). */
  setNodeHealth(node: string, status: CheckStatus): void {
    const n = this.nodes.get(node);
    if (!n) throw new Error(`no node ${node}`);
    this.write((index) => {
      n.serf = status;
      n.index = index;
      return { services: [...this.instances.values()].filter((i) => i.node === node).map((i) => i.name), catalog: false };
    });
  }

  /**
   * A snapshot restore (or a cluster rebuilt from one): every index drops to `to` or below, and every
   * blocked query is woken and answers at once with the lower index, as Consul's abandoned state store does.
   */
  resetIndex(to = 2): void {
    this.index = to;
    this.servicesIndex = Math.min(this.servicesIndex, to);
    for (const [k, v] of this.serviceIndex) this.serviceIndex.set(k, Math.min(v, to));
    this.emit('abandon');
  }

  /** Answer every request with this status and text body (Consul's errors are text/plain) until cleared. */
  failWith(status: number, body: string): void {
    this.failure = { status, body };
    this.emit('abandon');
  }

  clearFailure(): void {
    this.failure = undefined;
  }

  /** Stop listening and drop every connection: clients get ECONNREFUSED until up(). */
  async down(): Promise<void> {
    this.isDown = true;
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  async up(): Promise<void> {
    this.isDown = false;
    await this.listen(this.port);
  }

  async close(): Promise<void> {
    if (!this.isDown) await this.down();
  }

  /** Requests to a path (prefix) made at or after `since` (a Date.now() value or an index into `requests`). */
  requestsTo(pathPrefix: string, fromIndex = 0): RequestRecord[] {
    return this.requests.slice(fromIndex).filter((r) => r.path.startsWith(pathPrefix));
  }

  // ----------------------------------------------------------------------------------------------

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private write(fn: (index: number) => { services: string[]; catalog: boolean }): void {
    this.index += 1;
    const touched = fn(this.index);
    for (const s of touched.services) this.serviceIndex.set(s, this.index);
    if (touched.catalog) this.servicesIndex = this.index;
    this.emit('change');
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://consul');
    const query = Object.fromEntries(url.searchParams);
    const auth = req.headers.authorization;
    const headerToken = req.headers['x-consul-token'];
    const token =
      (typeof headerToken === 'string' && headerToken !== '' ? headerToken : undefined) ??
      (query.token !== undefined && query.token !== '' ? query.token : undefined) ??
      (auth?.startsWith('Bearer ') ? auth.slice(7) : undefined);
    const rec: RequestRecord = { path: url.pathname, query, token, at: Date.now() };
    this.requests.push(rec);
    this.emit('request', rec);

    const text = (status: number, body: string) => {
      rec.status = status;
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(body);
    };
    if (this.failure) return text(this.failure.status, this.failure.body);
    if (req.method !== 'GET') return text(405, 'method not allowed');

    let view: () => { index: number; body: unknown; filtered: boolean };
    const allowed = this.policy(token);
    if (allowed === 'unknown-token') return text(403, 'ACL not found');
    if (query.dc !== undefined && query.dc !== '' && query.dc !== this.datacenter) return text(500, 'No path to datacenter');

    const health = /^\/v1\/health\/service\/([^/]+)$/.exec(url.pathname);
    if (url.pathname === '/v1/catalog/services') {
      view = () => this.catalogView(allowed);
    } else if (health) {
      const name = decodeURIComponent(health[1] as string);
      let passing = false;
      if (url.searchParams.has('passing')) {
        const v = (query.passing ?? '').toLowerCase();
        if (v === '' || v === 'true' || v === '1' || v === 't') passing = true;
        else if (v === 'false' || v === '0' || v === 'f') passing = false;
        else return text(400, `Invalid value for ?passing`);
      }
      view = () => this.healthView(name, passing, allowed);
    } else {
      return text(404, '404 page not found');
    }

    let minIndex = 0;
    if (query.index !== undefined && query.index !== '') {
      if (!/^\d+$/.test(query.index)) return text(400, 'Invalid index');
      minIndex = Number(query.index);
    }
    let waitMs = 5 * 60_000;
    if (query.wait !== undefined && query.wait !== '') {
      const w = parseGoDuration(query.wait);
      if (w === undefined) return text(400, 'Invalid wait time');
      waitMs = Math.min(w, 10 * 60_000);
    }

    const reply = () => {
      const v = view();
      rec.status = 200;
      const headers: Record<string, string> = {
        'Content-Type': 'application/json',
        'X-Consul-Index': this.quirks.zeroIndex ? '0' : String(Math.max(1, v.index)),
        'X-Consul-KnownLeader': 'true',
        'X-Consul-LastContact': '0',
        'X-Consul-Effective-Consistency': 'leader',
      };
      if (v.filtered) headers['X-Consul-Results-Filtered-By-ACLs'] = 'true';
      res.writeHead(200, headers);
      res.end(JSON.stringify(v.body));
    };

    if (minIndex === 0 || view().index > minIndex) return reply();

    // Block (rpc.go blockingQuery): re-run on every write, answer when the index passes minIndex, on a restore, or at the deadline.
    rec.blocked = true;
    this.blocking++;
    this.emit('blocking', rec);
    const jitter = Math.floor(Math.random() * (waitMs / 16));
    let done = false;
    const finish = (why: 'change' | 'abandon' | 'timeout' | 'closed') => {
      if (done) return;
      if (why === 'change' && view().index <= minIndex) return;
      done = true;
      clearTimeout(timer);
      this.off('change', onChange);
      this.off('abandon', onAbandon);
      this.blocking--;
      if (why === 'closed') return;
      if (this.failure) return text(this.failure.status, this.failure.body);
      rec.timedOut = why === 'timeout';
      reply();
      if (why === 'timeout') this.emit('wait-elapsed', rec);
    };
    const onChange = () => finish('change');
    const onAbandon = () => finish('abandon');
    const timer = setTimeout(() => finish('timeout'), waitMs + jitter);
    this.on('change', onChange);
    this.on('abandon', onAbandon);
    res.on('close', () => finish('closed'));
  }

  /** The services a token may read, `'all'`, or 'unknown-token'. */
  private policy(token: string | undefined): string[] | 'all' | 'unknown-token' {
    if (!this.acl) return 'all';
    if (token === undefined) return this.acl.anonymous ?? [];
    const p = this.acl.tokens[token];
    return p === undefined ? 'unknown-token' : p;
  }

  private may(allowed: string[] | 'all', service: string): boolean {
    return allowed === 'all' || allowed.some((prefix) => service.startsWith(prefix));
  }

  private catalogView(allowed: string[] | 'all'): { index: number; body: unknown; filtered: boolean } {
    const body: Record<string, string[]> = {};
    let filtered = false;
    for (const i of [...this.instances.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (!this.may(allowed, i.name)) {
        filtered = true;
        continue;
      }
      const tags = body[i.name] ?? (body[i.name] = []);
      for (const t of i.tags) if (!tags.includes(t)) tags.push(t);
    }
    return { index: this.servicesIndex, body, filtered };
  }

  private healthView(name: string, passing: boolean, allowed: string[] | 'all'): { index: number; body: unknown; filtered: boolean } {
    const index = this.serviceIndex.get(name) ?? this.servicesIndex;
    if (!this.may(allowed, name)) return { index, body: [], filtered: true };
    const out: unknown[] = [];
    for (const i of this.instances.values()) {
      if (i.name !== name) continue;
      const node = this.nodes.get(i.node) as Node;
      const checks = [
        {
          Node: node.name,
          CheckID: 'serfHealth',
          Name: 'Serf Health Status',
          Status: node.serf,
          Notes: '',
          Output: '',
          ServiceID: '',
          ServiceName: '',
          ServiceTags: [],
          Type: '',
          CreateIndex: node.index,
          ModifyIndex: node.index,
        },
        ...[...i.checks].map(([cid, c]) => ({
          Node: node.name,
          CheckID: cid,
          Name: `Service '${i.name}' check`,
          Status: c.status,
          Notes: '',
          Output: '',
          ServiceID: i.id,
          ServiceName: i.name,
          ServiceTags: i.tags,
          Type: 'ttl',
          CreateIndex: c.index,
          ModifyIndex: c.index,
        })),
      ];
      if (passing && checks.some((c) => c.Status !== 'passing')) continue;
      out.push({
        Node: {
          ID: '',
          Node: node.name,
          Address: node.address,
          Datacenter: this.datacenter,
          TaggedAddresses: { lan: node.address, wan: node.address },
          Meta: { 'consul-network-segment': '' },
          CreateIndex: node.index,
          ModifyIndex: node.index,
        },
        Service: {
          ID: i.id,
          Service: i.name,
          Tags: i.tags,
          Address: i.address,
          Meta: i.meta,
          Port: i.port,
          Weights: i.weights,
          EnableTagOverride: false,
          Kind: i.kind,
          Proxy: { MeshGateway: {}, Expose: {} },
          Connect: {},
          CreateIndex: i.createIndex,
          ModifyIndex: i.modifyIndex,
        },
        Checks: checks,
      });
    }
    return { index, body: out, filtered: false };
  }
}

/** Go's time.ParseDuration, for the units Consul users write (ns us µs ms s m h; decimals; sequences). */
export function parseGoDuration(text: string): number | undefined {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (text === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return undefined;
    total += Number(m[1]) * (units[m[2] as string] as number);
    pos = re.lastIndex;
  }
  return pos === 0 ? undefined : total;
}
