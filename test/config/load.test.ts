/**
 * parseConfigText as a table, coredns-style: rows that load (with what they load to) and rows that
 * fail (with the path, line and message of every issue, and nothing else).
 */
import t from 'tap';
import type { Test } from 'tap';
import { DEFAULT_CONFIG, loadConfigFile, parseConfigText } from '../../src/config/index.js';
import type { PorticoConfig } from '../../src/config/index.js';
import { DNS_DEFAULTS } from '../../src/dns/settings.js';
import { L4_DEFAULTS } from '../../src/l4/settings.js';
import { L7_DEFAULTS } from '../../src/l7/settings.js';
import { ErrorCodes, PorticoError, ValidationError } from '../../src/model/errors.js';
import { issuesOf, yaml } from './helpers.js';

interface OkRow {
  name: string;
  text: string;
  check?: (cfg: PorticoConfig, t: Test) => void;
}

interface FailRow {
  name: string;
  text: string;
  /** Every issue expected, in report order (sorted by position). */
  issues: Array<{ path: string; line: number; column?: number; message?: RegExp }>;
}

const ok: OkRow[] = [
  { name: 'empty file', text: '', check: (cfg, t) => t.same(cfg, DEFAULT_CONFIG) },
  { name: 'only comments', text: '# nothing here\n\n# at all\n', check: (cfg, t) => t.same(cfg, DEFAULT_CONFIG) },
  { name: 'only {}', text: '{}\n', check: (cfg, t) => t.same(cfg, DEFAULT_CONFIG) },
  {
    name: 'defaults',
    text: '',
    check: (cfg, t) => {
      t.equal(cfg.data, './data');
      t.equal(cfg.store, 'embedded');
      t.same(cfg.api, { listen: '127.0.0.1:9900', metricsPublic: false });
      t.match(cfg.dns, { listen: '127.0.0.1:8053', upstreams: [], allowRecursionFrom: ['127.0.0.0/8', '::1/128'], ttlMs: 5000 });
      t.same(cfg.dns.zoneUpstreams, {});
      t.same(cfg.dns.domains, []);
      const { now: _now, ...dnsEngine } = DNS_DEFAULTS;
      t.same(cfg.dns, dnsEngine, 'the dns section is the DNS engine options, DNS_DEFAULTS when the file says nothing');
      t.same(cfg.l7, L7_DEFAULTS, 'the l7 section is L7_DEFAULTS when the file says nothing');
      t.same(cfg.l4, L4_DEFAULTS, 'the l4 section is L4_DEFAULTS when the file says nothing');
      t.same(cfg.vips, { listen: '127.0.0.1' });
      t.same(cfg.entrypoints, {});
      t.same(cfg.services, {});
      t.same(cfg.routes, []);
    },
  },
  {
    name: 'service defaults filled, durations in ms',
    text: yaml`
      services:
        web:
          endpoints: [ { address: 10.0.0.1, port: 80 } ]
          health: { interval: 1m30s }
    `,
    check: (cfg, t) => {
      t.same(cfg.services.web, {
        framework: 'marathon',
        endpoints: [{ address: '10.0.0.1', port: 80, weight: 1, health: 'unknown', labels: {} }],
        balance: { algorithm: 'roundrobin' },
        health: { expectStatus: [200, 399], intervalMs: 90_000, timeoutMs: 1000, rise: 2, fall: 3 },
        vips: [],
        labels: {},
      });
    },
  },
  {
    name: 'every endpoint and health field',
    text: yaml`
      services:
        db:
          framework: Data.Services
          endpoints:
            - address: "FD00:0:0::1"
              port: 5432
              weight: 0
              health: draining
              task: db-0
              taskId: db.1234
              agentAddress: 10.0.0.9
              network: dcos
              labels: { role: primary }
          health: { http: /ready, expect: "204", timeout: 250ms, rise: 1, fall: 5 }
          labels: { HAPROXY_GROUP: internal }
    `,
    check: (cfg, t) => {
      const db = cfg.services.db;
      t.equal(db?.framework, 'Data.Services', 'kept as written; the snapshot normalises');
      t.same(db?.endpoints[0], {
        address: 'fd00::1',
        port: 5432,
        weight: 0,
        health: 'draining',
        task: 'db-0',
        taskId: 'db.1234',
        agentAddress: '10.0.0.9',
        network: 'dcos',
        labels: { role: 'primary' },
      });
      t.same(db?.health, { httpPath: '/ready', expectStatus: [204, 204], intervalMs: 2000, timeoutMs: 250, rise: 1, fall: 5 });
      t.same(db?.labels, { HAPROXY_GROUP: 'internal' });
    },
  },
  {
    name: 'balance grammar',
    text: yaml`
      services:
        a: { balance: roundrobin }
        b: { balance: Weighted }
        c: { balance: leastconn }
        d: { balance: p2c }
        e: { balance: sticky }
        f: { balance: sticky(cookie:SESSION) }
        g: { balance: hash(ip) }
        h: { balance: "hash(header: X-User)" }
        i: { balance: hash(cookie:Sid) }
    `,
    check: (cfg, t) => {
      const b = (n: string) => cfg.services[n]?.balance;
      t.same(b('a'), { algorithm: 'roundrobin' });
      t.same(b('b'), { algorithm: 'weighted' });
      t.same(b('c'), { algorithm: 'leastconn' });
      t.same(b('d'), { algorithm: 'p2c' });
      t.same(b('e'), { algorithm: 'sticky', cookie: 'portico_sticky' });
      t.same(b('f'), { algorithm: 'sticky', cookie: 'SESSION' });
      t.same(b('g'), { algorithm: 'hash', hashOn: { kind: 'ip' } });
      t.same(b('h'), { algorithm: 'hash', hashOn: { kind: 'header', name: 'x-user' } });
      t.same(b('i'), { algorithm: 'hash', hashOn: { kind: 'cookie', name: 'Sid' } });
    },
  },
  {
    name: 'routes: defaults, normalisation, every field',
    text: yaml`
      entrypoints: { web: { listen: ":8080" } }
      services: { api: {} }
      routes:
        - { entrypoint: web, host: App.Example.TEST, service: api }
        - entrypoint: web
          host: "*.example.test"
          path: /api
          pathMatch: exact
          methods: [get, POST, GET]
          headers: [ { name: X-Canary, value: "1" }, { name: X-Debug } ]
          service: api
          stripPrefix: /api
          addPrefix: /v2
          redirectToHttps: true
          timeouts: { connect: 500ms, responseHeader: 10s, idle: 1m }
          maxBody: 10MiB
        - { entrypoint: web, host: "*", path: /upload, service: api, maxBody: 1024, timeouts: {} }
    `,
    check: (cfg, t) => {
      t.equal(cfg.entrypoints.web?.listen, '0.0.0.0:8080');
      t.same(cfg.routes[0], { entrypoint: 'web', host: 'app.example.test', path: '/', pathMatch: 'prefix', service: 'api' });
      t.same(cfg.routes[1], {
        entrypoint: 'web',
        host: '*.example.test',
        path: '/api',
        pathMatch: 'exact',
        service: 'api',
        methods: ['GET', 'POST'],
        headers: [{ name: 'x-canary', value: '1' }, { name: 'x-debug' }],
        stripPrefix: '/api',
        addPrefix: '/v2',
        redirectToHttps: true,
        timeouts: { connectMs: 500, responseHeaderMs: 10_000, idleMs: 60_000 },
        maxBodyBytes: 10 * 1024 * 1024,
      });
      t.equal(cfg.routes[2]?.maxBodyBytes, 1024);
      t.same(cfg.routes[2]?.timeouts, {});
    },
  },
  {
    name: 'entrypoints: tls, trusted proxies, IPv6, certificate paths against baseDir',
    text: yaml`
      entrypoints:
        web: { listen: "[::1]:8080", trustedProxies: [10.1.2.3/8, "FD00::/8", 192.168.0.1] }
        secure:
          listen: "[::1]:8443"
          tls:
            certificates:
              - { certFile: certs/site.pem, keyFile: /abs/site.key }
        pass: { listen: 127.0.0.1:9443, tls: { passthrough: true } }
    `,
    check: (cfg, t) => {
      t.same(cfg.entrypoints.web, { listen: '[::1]:8080', trustedProxies: ['10.0.0.0/8', 'fd00::/8', '192.168.0.1/32'] });
      t.same(cfg.entrypoints.secure?.tls, {
        auto: false,
        passthrough: false,
        certificates: [{ certFile: '/etc/portico/certs/site.pem', keyFile: '/abs/site.key' }],
      });
      t.same(cfg.entrypoints.pass?.tls, { auto: false, passthrough: true, certificates: [] });
    },
  },
  {
    name: 'dns: upstreams normalised, domains, ttl',
    text: yaml`
      dns:
        listen: "[::]:8053"
        upstreams: [8.8.8.8, "1.1.1.1:5353", "2001:4860:4860::8888", "[2606:4700::1111]:53"]
        allowRecursionFrom: []
        ttl: 0s
        domains: [Mesos., corp.example, mesos]
    `,
    check: (cfg, t) => {
      t.same(cfg.dns, {
        ...cfg.dns,
        listen: '[::]:8053',
        upstreams: ['8.8.8.8:53', '1.1.1.1:5353', '[2001:4860:4860::8888]:53', '[2606:4700::1111]:53'],
        allowRecursionFrom: [],
        ttlMs: 0,
        domains: ['mesos', 'corp.example'],
      });
      t.equal(cfg.dns.tcpIdleMs, DNS_DEFAULTS.tcpIdleMs, 'engine options not written keep their defaults');
    },
  },
  {
    name: 'store URLs',
    text: 'store: redis-sentinel://:secret@h1:26379,h2:26379,[fd00::1]:26379/mymaster\n',
    check: (cfg, t) => t.equal(cfg.store, 'redis-sentinel://:secret@h1:26379,h2:26379,[fd00::1]:26379/mymaster'),
  },
  { name: 'store redis', text: 'store: redis://127.0.0.1:6379/0\n', check: (cfg, t) => t.equal(cfg.store, 'redis://127.0.0.1:6379/0') },
  {
    name: 'store rediss',
    text: 'store: rediss://user:pw@redis.example.test\n',
    check: (cfg, t) => t.equal(cfg.store, 'rediss://user:pw@redis.example.test'),
  },
  {
    name: 'VIPs: named, addressed, udp, proxy protocol; same name on another protocol or port is fine',
    text: yaml`
      services:
        web:
          vips:
            - { name: /grp/web, port: 80 }
            - { name: /grp/web, port: 80, protocol: udp }
            - { name: /grp/web, port: 443, proxyProtocol: v2 }
            - { address: "FD00::0:1", port: 80 }
        web2:
          framework: other
          vips: [ { name: /grp/web, port: 80 } ]
    `,
    check: (cfg, t) => {
      t.same(cfg.services.web?.vips, [
        { name: '/grp/web', port: 80, protocol: 'tcp' },
        { name: '/grp/web', port: 80, protocol: 'udp' },
        { name: '/grp/web', port: 443, protocol: 'tcp', proxyProtocol: 'v2' },
        { address: 'fd00::1', port: 80, protocol: 'tcp' },
      ]);
    },
  },
  {
    name: 'port 0 listeners never collide; different hosts on one port are fine',
    text: yaml`
      api: { listen: 127.0.0.1:0 }
      entrypoints:
        a: { listen: 127.0.0.1:0 }
        b: { listen: 127.0.0.1:8080 }
        c: { listen: 127.0.0.2:8080 }
        d: { listen: "[::1]:8080" }
    `,
  },
  {
    name: 'anchors, aliases and merge keys',
    text: yaml`
      services:
        a:
          health: &checks { http: /healthz, interval: 5s }
          endpoints: &eps
            - { address: 10.0.0.1, port: 80 }
        b:
          health: { <<: *checks, interval: 1s }
          endpoints: *eps
    `,
    check: (cfg, t) => {
      t.equal(cfg.services.a?.health?.intervalMs, 5000);
      t.equal(cfg.services.b?.health?.intervalMs, 1000);
      t.equal(cfg.services.b?.health?.httpPath, '/healthz');
      t.same(cfg.services.b?.endpoints, cfg.services.a?.endpoints);
    },
  },
  {
    name: 'metricsPublic',
    text: 'api: { metricsPublic: true }\n',
    check: (cfg, t) => t.same(cfg.api, { listen: '127.0.0.1:9900', metricsPublic: true }),
  },
];

const fails: FailRow[] = [
  {
    name: 'malformed YAML: unclosed flow mapping',
    text: yaml`
      api: { listen: 127.0.0.1:9900
      entrypoints: {}
    `,
    issues: [{ path: '', line: 2, message: /flow map/i }],
  },
  {
    name: 'malformed YAML: bad indentation',
    text: yaml`
      services:
        web:
          framework: marathon
         endpoints: []
    `,
    issues: [{ path: '', line: 4 }],
  },
  {
    name: 'malformed YAML: two documents',
    text: 'data: a\n---\ndata: b\n',
    issues: [{ path: '', line: 2, message: /document/i }],
  },
  {
    name: 'unknown key at the top',
    text: 'data: ./data\nlisten: 127.0.0.1:80\n',
    issues: [{ path: 'listen', line: 2, column: 1, message: /^unknown key "listen"/ }],
  },
  {
    name: 'unknown key, one level down, with a suggestion',
    text: yaml`
      api:
        listne: 127.0.0.1:9900
    `,
    issues: [{ path: 'api.listne', line: 2, column: 3, message: /unknown key "listne" \(did you mean "listen"\?\)/ }],
  },
  {
    name: 'unknown key, five levels down',
    text: yaml`
      services:
        web:
          endpoints:
            - { address: 10.0.0.1, port: 80 }
            - { address: 10.0.0.2, port: 80, wieght: 2 }
    `,
    issues: [{ path: 'services.web.endpoints[1].wieght', line: 5, column: 40, message: /did you mean "weight"/ }],
  },
  {
    name: 'unknown key in route timeouts',
    text: yaml`
      entrypoints: { web: { listen: 127.0.0.1:8080 } }
      services: { web: {} }
      routes:
        - entrypoint: web
          host: a.test
          service: web
          timeouts:
            conect: 1s
    `,
    issues: [{ path: 'routes[0].timeouts.conect', line: 8, message: /did you mean "connect"/ }],
  },
  {
    name: 'duplicate key, top level',
    text: 'data: a\nstore: embedded\ndata: b\n',
    issues: [{ path: 'data', line: 3, column: 1, message: /duplicate key "data"/ }],
  },
  {
    name: 'duplicate key, nested (and the rest is still checked)',
    text: yaml`
      services:
        web:
          endpoints: []
          endpoints: []
      routes:
        - { entrypoint: nope, host: a.test, service: web }
    `,
    issues: [
      { path: 'services.web.endpoints', line: 4, column: 5, message: /duplicate key "endpoints"/ },
      { path: 'routes[0].entrypoint', line: 6, message: /unknown entrypoint "nope" \(none are defined\)/ },
    ],
  },
  {
    name: 'out-of-range port',
    text: yaml`
      services:
        web:
          endpoints:
            - { address: 10.0.0.1, port: 9001 }
            - { address: 10.0.0.1, port: 70000 }
    `,
    issues: [{ path: 'services.web.endpoints[1].port', line: 5, column: 36, message: /^must be 1\.\.65535 \(got 70000\)$/ }],
  },
  {
    name: 'port 0, port as a string, weight out of range, unknown health',
    text: yaml`
      services:
        web:
          endpoints:
            - { address: 10.0.0.1, port: 0 }
            - { address: 10.0.0.2, port: "80" }
            - { address: 10.0.0.3, port: 80, weight: 257, health: sick }
    `,
    issues: [
      { path: 'services.web.endpoints[0].port', line: 4, message: /must be 1\.\.65535/ },
      { path: 'services.web.endpoints[1].port', line: 5, message: /must be a whole number, not the string "80"/ },
      { path: 'services.web.endpoints[2].weight', line: 6, message: /must be 0\.\.256/ },
      { path: 'services.web.endpoints[2].health', line: 6, message: /must be one of healthy, unknown, unhealthy, draining/ },
    ],
  },
  {
    name: 'bad durations',
    text: yaml`
      dns: { ttl: 1500ms }
      services:
        web:
          health: { interval: 2x, timeout: 0s }
      entrypoints: { web: { listen: 127.0.0.1:8080 } }
      routes:
        - { entrypoint: web, host: a.test, service: web, timeouts: { idle: 5 } }
    `,
    issues: [
      { path: 'dns.ttl', line: 1, message: /whole seconds/ },
      { path: 'services.web.health.interval', line: 4, message: /"2x" is not a duration/ },
      { path: 'services.web.health.timeout', line: 4, message: /longer than 0s/ },
      { path: 'routes[0].timeouts.idle', line: 7, message: /must be a string/ },
    ],
  },
  {
    name: 'route to an unknown service and an unknown entrypoint',
    text: yaml`
      entrypoints: { web: { listen: 127.0.0.1:8080 } }
      services: { web: {}, api: {} }
      routes:
        - { entrypoint: web, host: a.test, service: web }
        - { entrypoint: websecure, host: a.test, service: wbe }
    `,
    issues: [
      { path: 'routes[1].entrypoint', line: 5, column: 19, message: /unknown entrypoint "websecure" \(defined: web\)/ },
      { path: 'routes[1].service', line: 5, column: 53, message: /unknown service "wbe" \(defined: web, api\)/ },
    ],
  },
  {
    name: 'duplicate endpoint (after address normalisation)',
    text: yaml`
      services:
        web:
          endpoints:
            - { address: 10.0.0.1, port: 80 }
            - { address: "fd00::1", port: 80 }
            - { address: 10.0.0.1, port: 81 }
            - { address: "FD00:0::1", port: 80 }
    `,
    issues: [
      {
        path: 'services.web.endpoints[3]',
        line: 7,
        message: /duplicate endpoint \[fd00::1\]:80 \(same as services\.web\.endpoints\[1\]\)/,
      },
    ],
  },
  {
    name: 'bad listen addresses',
    text: yaml`
      api: { listen: 127.0.0.1 }
      dns: { listen: "::1:53" }
      entrypoints:
        web: { listen: localhost:8080 }
        web2: { listen: 127.0.0.1:99999 }
    `,
    issues: [
      { path: 'api.listen', line: 1, message: /not host:port/ },
      { path: 'dns.listen', line: 2, message: /brackets/ },
      { path: 'entrypoints.web.listen', line: 4, message: /not an IPv4 or IPv6 address/ },
      { path: 'entrypoints.web2.listen', line: 5, message: /port must be 0\.\.65535/ },
    ],
  },
  {
    name: 'bad CIDRs (short IPv4 forms are refused)',
    text: yaml`
      dns:
        allowRecursionFrom: [127.0.0.0/8, 10/8, 10.0.0.0/33]
      entrypoints:
        web: { listen: 127.0.0.1:80, trustedProxies: [everyone] }
    `,
    issues: [
      { path: 'dns.allowRecursionFrom[1]', line: 2, message: /"10\/8" is not a CIDR/ },
      { path: 'dns.allowRecursionFrom[2]', line: 2, message: /"10\.0\.0\.0\/33" is not a CIDR/ },
      { path: 'entrypoints.web.trustedProxies[0]', line: 4, message: /"everyone" is not a CIDR/ },
    ],
  },
  {
    name: 'bad addresses and upstreams',
    text: yaml`
      vips: { listen: 127.0.0.256 }
      dns: { upstreams: [dns.google, ":53", "8.8.8.8:0"] }
      services:
        web:
          endpoints: [ { address: web.internal, port: 80, agentAddress: "10.0.0" } ]
    `,
    issues: [
      { path: 'vips.listen', line: 1 },
      { path: 'dns.upstreams[0]', line: 2, message: /not a DNS upstream/ },
      { path: 'dns.upstreams[1]', line: 2, message: /not a DNS upstream/ },
      { path: 'dns.upstreams[2]', line: 2, message: /not a DNS upstream/ },
      { path: 'services.web.endpoints[0].address', line: 5, message: /"web.internal" is not an IPv4 or IPv6 address/ },
      { path: 'services.web.endpoints[0].agentAddress', line: 5 },
    ],
  },
  {
    name: 'two entrypoints on one listen address, a wildcard overlapping the api, :: overlapping IPv4',
    text: yaml`
      api: { listen: 127.0.0.1:9900 }
      entrypoints:
        web: { listen: 127.0.0.1:8080 }
        web2: { listen: 127.0.0.1:8080 }
        all: { listen: 0.0.0.0:9900 }
        v6: { listen: "[::]:8080" }
        ok: { listen: 127.0.0.1:8081 }
    `,
    issues: [
      { path: 'entrypoints.web2.listen', line: 4, message: /collides with entrypoints\.web\.listen \(127\.0\.0\.1:8080\)/ },
      { path: 'entrypoints.all.listen', line: 5, message: /collides with api\.listen/ },
      { path: 'entrypoints.v6.listen', line: 6, message: /collides with entrypoints\.web\.listen/ },
    ],
  },
  {
    name: 'VIPs with both or neither of name and address, and duplicate VIPs',
    text: yaml`
      services:
        web:
          vips:
            - { name: web, address: 10.0.0.1, port: 80 }
            - { port: 81 }
            - { name: /web, port: 82 }
            - { name: web, port: 82 }
        other:
          vips: [ { name: Web, port: 82 }, { address: "fd00::1", port: 53, protocol: udp }, { address: "FD00::1", port: 53, protocol: udp } ]
    `,
    issues: [
      { path: 'services.web.vips[0]', line: 4, message: /name or an address, not both/ },
      { path: 'services.web.vips[1]', line: 5, message: /needs a name or an address/ },
      { path: 'services.web.vips[3]', line: 7, message: /duplicate VIP tcp\/web\.marathon:82 \(also services\.web\.vips\[2\]\)/ },
      { path: 'services.other.vips[0]', line: 9, message: /duplicate VIP tcp\/web\.marathon:82/ },
      { path: 'services.other.vips[2]', line: 9, message: /duplicate VIP udp\/\[fd00::1\]:53 \(also services\.other\.vips\[1\]\)/ },
    ],
  },
  {
    name: 'framework, VIP name, service name and entrypoint name validity',
    text: yaml`
      entrypoints:
        "web entry": { listen: 127.0.0.1:80 }
      services:
        web:
          framework: "---"
          vips: [ { name: "///", port: 80 } ]
        "a@b": {}
    `,
    issues: [
      { path: 'entrypoints["web entry"]', line: 2, column: 3, message: /not a valid name/ },
      { path: 'services.web.framework', line: 5, message: /not a valid framework name/ },
      { path: 'services.web.vips[0].name', line: 6, message: /not a valid VIP name/ },
      { path: 'services["a@b"]', line: 7, column: 3, message: /not a valid name/ },
    ],
  },
  {
    name: 'balance grammar errors',
    text: yaml`
      services:
        a: { balance: hash }
        b: { balance: "hash(header:)" }
        c: { balance: random }
        d: { balance: roundrobin(x) }
        e: { balance: "sticky(header:X)" }
        f: { balance: "hash(header:a b)" }
    `,
    issues: [
      { path: 'services.a.balance', line: 2, message: /write hash\(ip\), hash\(header:NAME\) or hash\(cookie:NAME\)/ },
      { path: 'services.b.balance', line: 3, message: /write hash\(ip\)/ },
      { path: 'services.c.balance', line: 4, message: /"random" is not a balance algorithm/ },
      { path: 'services.d.balance', line: 5, message: /takes no argument/ },
      { path: 'services.e.balance', line: 6, message: /sticky\(cookie:NAME\)/ },
      { path: 'services.f.balance', line: 7 },
    ],
  },
  {
    name: 'route host, path, methods and headers',
    text: yaml`
      entrypoints: { web: { listen: 127.0.0.1:80 } }
      services: { web: {} }
      routes:
        - { entrypoint: web, host: "bad_host!", service: web }
        - { entrypoint: web, host: a.test, path: api, service: web }
        - { entrypoint: web, host: a.test, path: /x, methods: ["GE T", GET, GET], service: web }
        - { entrypoint: web, host: a.test, path: /y, headers: [ { value: x } ], service: web }
        - { entrypoint: web, host: a.test, path: /z, service: web, stripPrefix: /api }
    `,
    issues: [
      { path: 'routes[0].host', line: 4, message: /not a valid route host/ },
      { path: 'routes[1].path', line: 5, message: /starts with "\/"/ },
      { path: 'routes[2].methods[0]', line: 6, message: /not a valid HTTP token/ },
      { path: 'routes[2].methods[2]', line: 6, message: /listed twice/ },
      { path: 'routes[3].headers[0]', line: 7, message: /missing required key "name"/ },
      { path: 'routes[4].stripPrefix', line: 8, message: /not a prefix of the route path "\/z"/ },
    ],
  },
  {
    name: 'two routes with the same match',
    text: yaml`
      entrypoints: { web: { listen: 127.0.0.1:80 } }
      services: { web: {}, api: {} }
      routes:
        - { entrypoint: web, host: a.test, path: /api, service: web }
        - { entrypoint: web, host: A.TEST, path: /api, service: api }
        - { entrypoint: web, host: a.test, path: /api, pathMatch: exact, service: api }
    `,
    issues: [{ path: 'routes[1]', line: 5, message: /same match as routes\[0\]/ }],
  },
  {
    name: 'missing required keys',
    text: yaml`
      entrypoints: { web: {} }
      services:
        web:
          endpoints: [ { address: 10.0.0.1 } ]
      routes:
        - { host: a.test }
    `,
    issues: [
      { path: 'entrypoints.web', line: 1, message: /missing required key "listen"/ },
      { path: 'services.web.endpoints[0]', line: 4, message: /missing required key "port"/ },
      { path: 'routes[0]', line: 6, message: /missing required key "entrypoint"/ },
      { path: 'routes[0]', line: 6, message: /missing required key "service"/ },
    ],
  },
  {
    name: 'tls that says nothing, tls that says too much',
    text: yaml`
      entrypoints:
        a: { listen: 127.0.0.1:1, tls: {} }
        b: { listen: 127.0.0.1:2, tls: { auto: true, passthrough: true } }
    `,
    issues: [
      { path: 'entrypoints.a.tls', line: 2, message: /tls needs auto: true, certificates, or passthrough/ },
      { path: 'entrypoints.b.tls.passthrough', line: 3, message: /cannot be combined/ },
    ],
  },
  {
    name: 'health: http and tcp together, tcp false alone, bad expect',
    text: yaml`
      services:
        a: { health: { http: /h, tcp: true } }
        b: { health: { tcp: false } }
        c: { health: { http: /h, expect: 399-200 } }
    `,
    issues: [
      { path: 'services.a.health.tcp', line: 2, message: /either http or tcp/ },
      { path: 'services.b.health.tcp', line: 3, message: /leaves no check/ },
      { path: 'services.c.health.expect', line: 4, message: /not a status range/ },
    ],
  },
  {
    name: 'wrong types',
    text: yaml`
      data: 5
      services:
        web:
          endpoints: { address: 10.0.0.1, port: 80 }
          labels: { port: 80 }
      routes: {}
    `,
    issues: [
      { path: 'data', line: 1, message: /must be a string, not number 5/ },
      { path: 'services.web.endpoints', line: 4, message: /must be a list, not a mapping/ },
      { path: 'services.web.labels.port', line: 5, message: /must be a string/ },
      { path: 'routes', line: 6, message: /must be a list, not a mapping/ },
    ],
  },
  {
    name: 'a section with no value',
    text: 'api:\nentrypoints: {}\n',
    issues: [{ path: 'api', line: 1, message: /must be a mapping, not nothing/ }],
  },
  {
    name: 'not a mapping at all',
    text: '- data: ./data\n',
    issues: [{ path: '', line: 1, message: /must be a mapping, not a list/ }],
  },
  {
    name: 'bad store',
    text: 'store: mysql://db\n',
    issues: [{ path: 'store', line: 1, message: /is not a store/ }],
  },
  {
    name: 'a bad store URL does not echo its password',
    text: 'store: redis://:hunter2@h1:6379/x\n',
    issues: [{ path: 'store', line: 1, message: /^"redis:\/\/\*\*\*@h1:6379\/x" is not a store/ }],
  },
  {
    name: 'sentinel without a master name',
    text: 'store: redis-sentinel://h1:26379,h2:26379\n',
    issues: [{ path: 'store', line: 1, message: /names its master/ }],
  },
  {
    name: 'bad size',
    text: yaml`
      entrypoints: { web: { listen: 127.0.0.1:80 } }
      services: { web: {} }
      routes: [ { entrypoint: web, host: a.test, service: web, maxBody: 10XB }, { entrypoint: web, host: b.test, service: web, maxBody: -1 } ]
    `,
    issues: [
      { path: 'routes[0].maxBody', line: 3, message: /"10XB" is not a size/ },
      { path: 'routes[1].maxBody', line: 3, message: /must be >= 0/ },
    ],
  },
  {
    name: 'all errors are reported at once, in file order',
    text: yaml`
      api:
        listen: 127.0.0.1:9900
        bogus: true
      entrypoints:
        web: { listen: 127.0.0.1:8080 }
      services:
        web:
          endpoints:
            - { address: 10.0.0.1, port: 80 }
            - { address: 10.0.0.1, port: 80 }
            - { address: 10.0.0.2, port: 65536 }
          health: { interval: soon }
      routes:
        - { entrypoint: web, host: a.test, service: nope }
        - { entrypoint: web, host: "b_test", service: web }
    `,
    issues: [
      { path: 'api.bogus', line: 3 },
      { path: 'services.web.endpoints[1]', line: 10 },
      { path: 'services.web.endpoints[2].port', line: 11 },
      { path: 'services.web.health.interval', line: 12 },
      { path: 'routes[0].service', line: 14 },
      { path: 'routes[1].host', line: 15 },
    ],
  },
];

t.test('loads', async (t) => {
  for (const row of ok) {
    t.test(row.name, async (t) => {
      const cfg = parseConfigText(row.text, { file: 'test.yaml', baseDir: '/etc/portico' });
      row.check?.(cfg, t);
      t.ok(Object.isFrozen(cfg), 'frozen');
    });
  }
});

t.test('fails', async (t) => {
  for (const row of fails) {
    t.test(row.name, async (t) => {
      const issues = issuesOf(row.text);
      t.same(
        issues.map((i) => `${i.path} @${i.line}`),
        row.issues.map((i) => `${i.path} @${i.line}`),
        'paths and lines',
      );
      row.issues.forEach((want, n) => {
        const got = issues[n];
        if (!got) return;
        if (want.column !== undefined) t.equal(got.column, want.column, `${want.path} column`);
        if (want.message) t.match(got.message, want.message, `${want.path} message`);
        t.type(got.column, 'number', `${want.path} has a column`);
      });
    });
  }
});

t.test('ValidationError carries code, file and file:line:col in its message', async (t) => {
  const text = 'api:\n  listen: nowhere\n';
  const err = t.throws(() => parseConfigText(text, { file: '/etc/portico/portico.yaml' })) as ValidationError;
  t.type(err, ValidationError);
  t.type(err, PorticoError);
  t.equal(err.code, ErrorCodes.CONFIG_INVALID);
  t.equal(err.file, '/etc/portico/portico.yaml');
  t.equal(
    err.message,
    '/etc/portico/portico.yaml:2:11: api.listen: "nowhere" is not host:port (write e.g. "127.0.0.1:8080" or "[::1]:8080")',
  );
});

t.test('the returned config is deep-frozen', async (t) => {
  const cfg = parseConfigText(yaml`
    services:
      web:
        endpoints: [ { address: 10.0.0.1, port: 80, labels: { a: b } } ]
  `);
  t.ok(Object.isFrozen(cfg.services.web?.endpoints[0]?.labels));
  t.throws(() => {
    (cfg.services.web?.endpoints as unknown as unknown[]).push({});
  });
  t.ok(Object.isFrozen(DEFAULT_CONFIG.dns.allowRecursionFrom));
});

t.test('alias bombs are refused, not expanded', async (t) => {
  const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 8; i++)
    lines.push(
      `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
        .fill(`*${String.fromCharCode(97 + i)}`)
        .join(', ')}]`,
    );
  const issues = issuesOf(`${lines.join('\n')}\n`);
  t.ok(issues.length >= 1);
});

t.test('loadConfigFile', async (t) => {
  const dir = t.testdir({
    'good.yaml': 'entrypoints:\n  web: { listen: 127.0.0.1:8080, tls: { certificates: [ { certFile: c.pem, keyFile: k.pem } ] } }\n',
    'bad.yaml': 'api:\n  listen: 1\n',
    sub: {},
  });
  const cfg = await loadConfigFile(`${dir}/good.yaml`);
  t.same(cfg.entrypoints.web?.tls?.certificates, [{ certFile: `${dir}/c.pem`, keyFile: `${dir}/k.pem` }], 'paths relative to the file');

  const missing = await loadConfigFile(`${dir}/nope.yaml`).catch((e: unknown) => e);
  t.type(missing, PorticoError);
  t.equal((missing as PorticoError).code, ErrorCodes.CONFIG_READ);
  t.equal((missing as PorticoError).message, `cannot read config file ${dir}/nope.yaml: no such file`);

  const isDir = await loadConfigFile(`${dir}/sub`).catch((e: unknown) => e);
  t.match((isDir as PorticoError).message, /it is a directory/);

  const bad = await loadConfigFile(`${dir}/bad.yaml`).catch((e: unknown) => e);
  t.type(bad, ValidationError);
  t.equal((bad as ValidationError).file, `${dir}/bad.yaml`);
  t.match((bad as ValidationError).message, `${dir}/bad.yaml:2:11: api.listen: must be a string`);
});
