/**
 * Marathon app JSON → Snapshot. The fixtures are Marathon's documentation examples (see fixtures/README.md);
 * label cases add marathon-lb labels to a documented app, one label at a time, and check the one route or
 * service field each label is for.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  translateApps,
  type MarathonApp,
  type MarathonTranslateOptions,
  type TranslateResult,
} from '../../../src/providers/marathon/index.js';
import type { Endpoint } from '../../../src/model/types.js';

const FIX = join(__dirname, 'fixtures');
const docsApps = (): MarathonApp[] => (JSON.parse(readFileSync(join(FIX, 'apps.json'), 'utf8')) as { apps: MarathonApp[] }).apps;
const dockerBridgeApp = (): MarathonApp => JSON.parse(readFileSync(join(FIX, 'app-docker-bridge.json'), 'utf8')) as MarathonApp;
const byId = (id: string): MarathonApp => structuredClone(docsApps().find((a) => a.id === id) as MarathonApp);

const OPTS: MarathonTranslateOptions = { provider: 'marathon', groups: ['external'] };
const run = (apps: MarathonApp[], opts: Partial<MarathonTranslateOptions> = {}): ReturnType<typeof translateApps> =>
  translateApps(apps, { ...OPTS, ...opts });

/** The documented /toggle app (host networking, legacy `ports`, an HTTP health check) with labels added. */
function toggle(labels: Record<string, string>, mutate?: (a: MarathonApp) => void): MarathonApp {
  const a = byId('/toggle');
  a.labels = { HAPROXY_GROUP: 'external', ...labels };
  mutate?.(a);
  return a;
}

/** The same app without its health check (so the mode defaults to tcp unless a VHOST is set). */
function plain(labels: Record<string, string>, mutate?: (a: MarathonApp) => void): MarathonApp {
  return toggle(labels, (a) => {
    a.healthChecks = [];
    for (const task of a.tasks ?? []) delete task.healthCheckResults;
    mutate?.(a);
  });
}

const warningsOf = (r: TranslateResult): string[] => r.warnings.map((w) => w.message);
const routesOf = (r: TranslateResult) => r.snapshot.routes;

t.test('documented apps: services, names, endpoints per networking mode', async (t) => {
  const r = run(docsApps());
  const s = r.snapshot.services;
  t.same(Object.keys(s).sort(), ['pywebserver-0', 'service-prod-0', 'spark-0', 'spark-1', 'spark-2', 'toggle-0']);

  // host networking, legacy `ports`: agent IP + task.ports[n]; Mesos-DNS task name; healthy from results.
  const toggleEps = s['toggle-0']?.endpoints as Endpoint[];
  t.same(
    toggleEps.map((e) => [e.address, e.port, e.health, e.weight]),
    [
      ['10.141.141.10', 31045, 'healthy', 1],
      ['10.141.141.10', 31234, 'healthy', 1],
    ],
  );
  t.equal(toggleEps[0]?.task, 'toggle');
  t.equal(toggleEps[0]?.taskId, 'toggle.802df2ae-3ad4-11e4-a400-56847afe9799');
  t.equal(toggleEps[0]?.agentAddress, '10.141.141.10');
  t.equal(s['toggle-0']?.framework, 'marathon');

  // container/bridge (Marathon 1.5 networks): agent IP + the host port, not the container IP.
  const py = s['pywebserver-0']?.endpoints[0];
  t.same([py?.address, py?.port, py?.network], ['10.0.2.148', 1565, undefined]);

  // container networking: the task's IP + containerPort, on the named network; agent kept apart.
  const prod = s['service-prod-0'];
  t.same(
    prod?.endpoints.map((e) => [e.address, e.port, e.network, e.agentAddress]),
    [
      ['9.0.3.130', 8080, 'dcos', '10.0.3.11'],
      ['9.0.4.7', 8080, 'dcos', '10.0.3.12'],
    ],
  );
  t.equal(prod?.endpoints[0]?.task, 'service.prod', 'task name is the app path reversed (Marathon PathId.toHostname)');
  t.same(prod?.vips, [{ name: 'prodservice', port: 8080, protocol: 'tcp' }], '/prod/service → prodservice, as dcos-l4lb');

  // three ports, three services, each with its own named VIP from its port label.
  t.same(
    [0, 1, 2].map((i) => s[`spark-${i}`]?.vips[0]),
    [
      { name: 'dispatcher.spark', port: 7077, protocol: 'tcp' },
      { name: 'dispatcher.spark', port: 4040, protocol: 'tcp' },
      { name: 'dispatcher.spark', port: 80, protocol: 'tcp' },
    ],
  );
  t.same(
    [0, 1, 2].map((i) => s[`spark-${i}`]?.endpoints[0]?.port),
    [21515, 21516, 21517],
  );
  t.equal(s['spark-1']?.labels['marathon.port-name'], 'dispatcher-ui');
  t.same(r.stats, { apps: 4, tasks: 6, services: 6, endpoints: 8, routes: 3 });
});

t.test('legacy docker BRIDGE app from the docs: lower-case "vip" IP label, host ports', async (t) => {
  const app = dockerBridgeApp();
  app.tasks = [{ id: 'foo.1', host: '10.0.0.7', ports: [31001], state: 'TASK_RUNNING', healthCheckResults: [{ alive: true }] }];
  const s = run([app]).snapshot.services['foo-0'];
  t.same(s?.vips, [{ address: '192.168.0.1', port: 80, protocol: 'tcp' }]);
  t.same(
    s?.endpoints.map((e) => [e.address, e.port]),
    [['10.0.0.7', 31001]],
  );
});

t.test('determinism: any app order gives the same snapshot', async (t) => {
  const a = run(docsApps());
  const b = run(docsApps().reverse());
  t.same(JSON.stringify(b.snapshot), JSON.stringify(a.snapshot));
});

t.test('VHOST: a comma list → routes on web and websecure per host, lower-cased', async (t) => {
  const r = run([toggle({ HAPROXY_0_VHOST: 'Toggle.example.test, other.example.test' })]);
  t.same(
    routesOf(r)
      .filter((x) => x.entrypoint !== 'marathon-10000')
      .map((x) => [x.entrypoint, x.host, x.path, x.pathMatch, x.service]),
    [
      ['web', 'toggle.example.test', '/', 'prefix', 'toggle-0'],
      ['websecure', 'toggle.example.test', '/', 'prefix', 'toggle-0'],
      ['web', 'other.example.test', '/', 'prefix', 'toggle-0'],
      ['websecure', 'other.example.test', '/', 'prefix', 'toggle-0'],
    ],
  );
  t.equal(routesOf(r)[0]?.id, 'marathon/toggle-0/web/toggle.example.test/', 'stable route id');
  const custom = run([toggle({ HAPROXY_0_VHOST: 'a.example.test' })], { httpEntrypoint: 'http', httpsEntrypoint: null });
  t.same(
    routesOf(custom).map((x) => x.entrypoint),
    ['http', 'marathon-10000'],
    'entrypoint names are options; null leaves one out',
  );
  t.match(warningsOf(run([toggle({ HAPROXY_0_VHOST: 'bad host!' })])), [/VHOST "bad host!" is not a valid host name/]);
});

t.test('PATH: space list of path_beg prefixes × each vhost; -i is reported', async (t) => {
  const r = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_PATH: '/api /v2' })]);
  t.same(
    routesOf(r)
      .filter((x) => x.entrypoint === 'web')
      .map((x) => x.path),
    ['/api', '/v2'],
  );
  const ci = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_PATH: '-i /api' })]);
  t.same(
    routesOf(ci)
      .filter((x) => x.entrypoint === 'web')
      .map((x) => x.path),
    ['/api'],
  );
  t.match(warningsOf(ci), [/"-i" \(case-insensitive paths\) is not supported/]);
  t.match(warningsOf(run([toggle({ HAPROXY_0_PATH: '/api' })])), [/HAPROXY_0_PATH needs a HAPROXY_0_VHOST/]);
});

t.test('MODE: http (HTTP health check or VHOST) → an entrypoint of its own; tcp → an IP VIP', async (t) => {
  // The documented app has an HTTP health check: marathon-lb puts the port in http mode.
  const http = run([toggle({})]);
  t.same(http.snapshot.entrypoints['marathon-10000'], { name: 'marathon-10000', listen: '127.0.0.1:10000', trustedProxies: [] });
  t.same(
    routesOf(http).map((x) => [x.entrypoint, x.host, x.path]),
    [['marathon-10000', '*', '/']],
  );
  t.same(http.snapshot.services['toggle-0']?.vips, []);

  const tcp = run([plain({})]);
  t.same(tcp.snapshot.services['toggle-0']?.vips, [{ address: '127.0.0.1', port: 10000, protocol: 'tcp' }]);
  t.same(tcp.snapshot.entrypoints, {});

  const forcedTcp = run([toggle({ HAPROXY_0_MODE: 'TCP' })]);
  t.same(
    forcedTcp.snapshot.services['toggle-0']?.vips,
    [{ address: '127.0.0.1', port: 10000, protocol: 'tcp' }],
    'MODE label wins, case-insensitive',
  );
  const forcedHttp = run([plain({ HAPROXY_0_MODE: 'http' })]);
  t.ok(forcedHttp.snapshot.entrypoints['marathon-10000']);
  t.match(warningsOf(run([plain({ HAPROXY_0_MODE: 'udp' })])), [/HAPROXY_0_MODE="udp" is neither http nor tcp/]);
});

t.test('PORT and BIND_ADDR: where the service port is bound', async (t) => {
  const port = run([plain({ HAPROXY_0_PORT: '8443' })]);
  t.same(port.snapshot.services['toggle-0']?.vips, [{ address: '127.0.0.1', port: 8443, protocol: 'tcp' }]);
  const bind = run([toggle({ HAPROXY_0_BIND_ADDR: '10.0.0.42' })]);
  t.equal(bind.snapshot.entrypoints['marathon-10000']?.listen, '10.0.0.42:10000');
  const star = run([plain({ HAPROXY_0_BIND_ADDR: '*' })]);
  t.same(
    star.snapshot.services['toggle-0']?.vips,
    [{ address: '0.0.0.0', port: 10000, protocol: 'tcp' }],
    '"*" is every interface, as in HAProxy',
  );
  const v6 = run([toggle({ HAPROXY_0_BIND_ADDR: '::1' })]);
  t.equal(v6.snapshot.entrypoints['marathon-10000']?.listen, '[::1]:10000');
  const bad = run([toggle({ HAPROXY_0_BIND_ADDR: 'lb.example' })]);
  t.same(bad.snapshot.entrypoints, {});
  t.match(warningsOf(bad), [/BIND_ADDR="lb.example" is not an IP address/]);
  const def = run([plain({})], { defaultBindAddress: '0.0.0.0' });
  t.same(def.snapshot.services['toggle-0']?.vips, [{ address: '0.0.0.0', port: 10000, protocol: 'tcp' }], 'defaultBindAddress option');
  const off = run([plain({})], { bindServicePorts: false });
  t.same(off.snapshot.services['toggle-0']?.vips, [], 'bindServicePorts: false');
  const noPort = run([plain({}, (a) => (a.ports = [0]))]);
  t.same(noPort.snapshot.services['toggle-0']?.vips, [], 'service port 0: nothing bound');
  const badPort = run([plain({ HAPROXY_0_PORT: '99999' })]);
  t.match(warningsOf(badPort), [/HAPROXY_0_PORT="99999" is not a port/]);
});

t.test('BALANCE and STICKY → the service balance', async (t) => {
  const bal = (v: string) => run([toggle({ HAPROXY_0_BALANCE: v })]).snapshot.services['toggle-0']?.balance;
  t.same(bal('roundrobin'), { algorithm: 'roundrobin' });
  t.same(bal('static-rr'), { algorithm: 'roundrobin' });
  t.same(bal('leastconn'), { algorithm: 'leastconn' });
  t.same(bal('source'), { algorithm: 'hash', hashOn: { kind: 'ip' } });
  t.same(bal('random'), { algorithm: 'p2c' });
  t.same(bal('hdr(X-User)'), { algorithm: 'hash', hashOn: { kind: 'header', name: 'x-user' } });
  const uri = run([toggle({ HAPROXY_0_BALANCE: 'uri' })]);
  t.same(uri.snapshot.services['toggle-0']?.balance, { algorithm: 'roundrobin' });
  t.match(warningsOf(uri), [/HAPROXY_0_BALANCE="uri" is not supported/]);
  t.same(run([toggle({ HAPROXY_0_STICKY: 'true', HAPROXY_0_BALANCE: 'leastconn' })]).snapshot.services['toggle-0']?.balance, {
    algorithm: 'sticky',
    cookie: 'mesosphere_server_id',
  });
  t.same(run([toggle({ HAPROXY_0_STICKY: 'false' })]).snapshot.services['toggle-0']?.balance, { algorithm: 'roundrobin' });
});

t.test('REDIRECT_TO_HTTPS → the http routes redirect, the https ones serve', async (t) => {
  const r = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_REDIRECT_TO_HTTPS: 'true' })]);
  const web = routesOf(r).find((x) => x.entrypoint === 'web');
  const secure = routesOf(r).find((x) => x.entrypoint === 'websecure');
  t.equal(web?.redirectToHttps, true);
  t.equal(secure?.redirectToHttps, undefined);
});

t.test('SSL_CERT → the service port entrypoint terminates TLS with that PEM', async (t) => {
  const r = run([toggle({ HAPROXY_0_SSL_CERT: '/etc/ssl/toggle.pem' })]);
  t.same(r.snapshot.entrypoints['marathon-10000']?.tls, {
    auto: false,
    certificates: [{ certFile: '/etc/ssl/toggle.pem', keyFile: '/etc/ssl/toggle.pem' }],
  });
  t.match(warningsOf(run([plain({ HAPROXY_0_SSL_CERT: '/etc/ssl/x.pem' })])), [/SSL_CERT on a tcp service port/]);
});

t.test('USE_HSTS, AUTH, BACKEND_NETWORK_ALLOWED_ACL, HTTP_BACKEND_PROXYPASS_PATH → route fields', async (t) => {
  const labels = {
    HAPROXY_0_VHOST: 'a.example.test',
    HAPROXY_0_USE_HSTS: 'true',
    HAPROXY_0_AUTH: 'Private area:admin:$6$rounds=5000$salt$hash',
    HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL: '10.1.40.0/24 10.1.55.43',
    HAPROXY_0_HTTP_BACKEND_PROXYPASS_PATH: '/toggle',
  };
  const r = run([toggle(labels)]);
  t.equal(routesOf(r).length, 3, 'web, websecure and the service port');
  for (const route of routesOf(r)) {
    t.same(route.hsts, { maxAgeS: 15768000, includeSubdomains: false, preload: false }, `${route.entrypoint}: hsts`);
    t.same(
      route.basicAuth,
      { realm: 'Private area', users: [{ user: 'admin', hash: '$6$rounds=5000$salt$hash' }] },
      `${route.entrypoint}: basic auth`,
    );
    t.same(route.allowFrom, ['10.1.40.0/24', '10.1.55.43/32'], `${route.entrypoint}: allow list`);
    t.equal(route.stripPrefix, '/toggle', `${route.entrypoint}: proxypass`);
  }
});

t.test('AUTH that is not realm:user:hash fails closed', async (t) => {
  const r = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_AUTH: 'realm-only' })]);
  t.same(routesOf(r), [], 'no route at all: the app asked for authentication');
  t.same(r.snapshot.entrypoints, {});
  t.ok(r.snapshot.services['toggle-0'], 'the service (DNS, VIPs) stays');
  t.match(warningsOf(r), [/HAPROXY_0_AUTH is not "realm:user:encrypted-password".*fail closed/]);
});

t.test('BACKEND_NETWORK_ALLOWED_ACL: bad entries reported; a tcp port that cannot enforce it is not bound', async (t) => {
  const r = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL: '10.0.0.0/8 nonsense' })]);
  t.same(routesOf(r)[0]?.allowFrom, ['10.0.0.0/8']);
  t.match(warningsOf(r), [/entry "nonsense" is not an IP or CIDR/]);
  const tcp = run([plain({ HAPROXY_0_BACKEND_NETWORK_ALLOWED_ACL: '10.0.0.0/8' })]);
  t.same(tcp.snapshot.services['toggle-0']?.vips, []);
  t.match(warningsOf(tcp), [/cannot be enforced/]);
});

t.test('ENABLED and --strict-mode', async (t) => {
  const off = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_ENABLED: 'false' })]);
  t.same(routesOf(off), []);
  t.same(off.snapshot.entrypoints, {});
  t.ok(off.snapshot.services['toggle-0'], 'a disabled port is still a service (DNS)');
  t.equal(off.snapshot.services['toggle-0']?.health, undefined, 'and gets no active checks from us');
  const strict = run([toggle({ HAPROXY_0_VHOST: 'a.example.test' })], { strictMode: true });
  t.same(routesOf(strict), [], 'strict mode: not enabled, not served');
  const strictOn = run([toggle({ HAPROXY_0_VHOST: 'a.example.test', HAPROXY_0_ENABLED: 'yes' })], { strictMode: true });
  t.equal(routesOf(strictOn).length, 3);
});

t.test('BACKEND_WEIGHT orders claims on one host+path; PATH routes weigh 1 by default', async (t) => {
  const a = toggle({ HAPROXY_0_VHOST: 'shared.example.test' }, (x) => (x.id = '/a'));
  const b = toggle({ HAPROXY_0_VHOST: 'shared.example.test', HAPROXY_0_BACKEND_WEIGHT: '5' }, (x) => {
    x.id = '/b';
    x.ports = [10001];
  });
  const r = run([a, b]);
  const web = routesOf(r).filter((x) => x.entrypoint === 'web');
  t.same(
    web.map((x) => x.service),
    ['b-0', 'a-0'],
    'the heavier app claims first (the aggregator serves the first claim)',
  );
  const c = toggle({ HAPROXY_0_VHOST: 'shared.example.test', HAPROXY_0_PATH: '/x' }, (x) => {
    x.id = '/c';
    x.ports = [10002];
  });
  const r2 = run([a, c]);
  t.same(
    routesOf(r2)
      .filter((x) => x.entrypoint === 'web')
      .map((x) => x.service),
    ['c-0', 'a-0'],
  );
  t.match(warningsOf(run([toggle({ HAPROXY_0_BACKEND_WEIGHT: 'heavy' })])), [/BACKEND_WEIGHT="heavy" is not an integer/]);
});

t.test('GROUP: HAPROXY_{n}_GROUP overrides HAPROXY_GROUP; * serves all; no group is not served', async (t) => {
  const app = toggle({ HAPROXY_GROUP: 'internal', HAPROXY_0_VHOST: 'a.example.test' });
  t.same(routesOf(run([app], { groups: ['external'] })), []);
  t.equal(routesOf(run([app], { groups: ['internal'] })).length, 3);
  t.equal(routesOf(run([app], { groups: ['*'] })).length, 3);
  const perPort = toggle({ HAPROXY_GROUP: 'internal', HAPROXY_0_GROUP: 'edge,external', HAPROXY_0_VHOST: 'a.example.test' });
  t.equal(routesOf(run([perPort], { groups: ['external'] })).length, 3, 'per-port group (comma list) wins');
  t.same(routesOf(run([perPort], { groups: ['internal'] })), []);
  const none = toggle({ HAPROXY_0_VHOST: 'a.example.test' }, (a) => delete a.labels?.HAPROXY_GROUP);
  const rn = run([none]);
  t.same(routesOf(rn), []);
  t.match(warningsOf(rn), [/no HAPROXY_GROUP; this instance serves groups \[external\]/]);
  t.equal(routesOf(run([none], { groups: ['*'] })).length, 3);
  t.ok(run([none]).snapshot.services['toggle-0'], 'services and DNS do not depend on groups');
});

t.test('labels Portico does not support are reported per app, as are typos and ports that do not exist', async (t) => {
  const r = run([
    toggle({
      HAPROXY_0_VHOST: 'a.example.test',
      HAPROXY_0_BACKEND_HEAD: 'backend {backend}\n  balance first\n',
      HAPROXY_0_BIND_OPTIONS: 'ciphers AES128+EECDH',
      HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH: '/x',
      HAPROXY_DEPLOYMENT_GROUP: 'toggle',
      HAPROXY_0_VHOTS: 'typo.example.test',
      HAPROXY_3_VHOST: 'nowhere.example.test',
    }),
  ]);
  const w = warningsOf(r);
  t.ok(
    w.includes(
      'marathon-lb labels Portico does not support (ignored): HAPROXY_0_BACKEND_HEAD, HAPROXY_0_BIND_OPTIONS, HAPROXY_0_HTTP_BACKEND_REVPROXY_PATH, HAPROXY_DEPLOYMENT_GROUP',
    ),
    w.join('\n'),
  );
  t.ok(w.includes("labels that are not marathon-lb's (typo?; ignored): HAPROXY_0_VHOTS"));
  t.ok(w.some((x) => /port index 3 \(HAPROXY_3_\*\), but the app has 1 port/.test(x)));
  t.ok(
    r.warnings.every((x) => x.app === '/toggle'),
    'each warning names its app',
  );
});

t.test('VIP labels: named and IP, both protocols, bad ones reported', async (t) => {
  const app = plain({}, (a) => {
    delete a.ports;
    a.portDefinitions = [
      { port: 0, protocol: 'tcp,udp', labels: { VIP_0: '/grp/app:53' } },
      { port: 0, protocol: 'tcp', labels: { VIP_1: '10.10.0.5:8080', vip_extra: '[fd01:c::5]:80' } },
      { port: 0, labels: { VIP_2: 'no-port' } },
    ];
    for (const task of a.tasks ?? []) task.ports = [31001, 31002, 31003];
  });
  const s = run([app]).snapshot.services;
  t.same(s['toggle-0']?.vips, [
    { name: 'grpapp', port: 53, protocol: 'tcp' },
    { name: 'grpapp', port: 53, protocol: 'udp' },
  ]);
  t.same(s['toggle-1']?.vips, [
    { address: '10.10.0.5', port: 8080, protocol: 'tcp' },
    { address: 'fd01:c::5', port: 80, protocol: 'tcp' },
  ]);
  t.same(s['toggle-2']?.vips, []);
  t.match(warningsOf(run([app])), [/VIP label VIP_2="no-port" is not "\/name:port" or "ip:port"/]);
});

t.test('health: Marathon results decide; checks become active checks as marathon-lb derives them', async (t) => {
  const r = run([toggle({ HAPROXY_0_VHOST: 'a.example.test' })]);
  t.same(r.snapshot.services['toggle-0']?.health, {
    expectStatus: [200, 399],
    intervalMs: 10_000,
    timeoutMs: 10_000,
    rise: 2,
    fall: 4,
    httpPath: '/health',
  });
  t.same(r.verdicts.get('toggle.802df2ae-3ad4-11e4-a400-56847afe9799'), true);

  const failing = toggle({}, (a) => {
    const task = a.tasks?.[1];
    if (task?.healthCheckResults?.[0]) task.healthCheckResults[0].alive = false;
  });
  t.same(
    run([failing]).snapshot.services['toggle-0']?.endpoints.map((e) => e.health),
    ['healthy', 'unhealthy'],
  );

  const pending = toggle({}, (a) => delete a.tasks?.[0]?.healthCheckResults);
  // (endpoints are sorted by address and port: task 0, port 31045, comes first)
  t.same(
    run([pending]).snapshot.services['toggle-0']?.endpoints.map((e) => e.health),
    ['unhealthy', 'healthy'],
    'no result yet: not served (marathon-lb --health-check)',
  );
  t.same(
    run([pending], { missingHealth: 'unknown' }).snapshot.services['toggle-0']?.endpoints.map((e) => e.health),
    ['unknown', 'healthy'],
    'files: served, our checks decide',
  );
  const remembered = new Map([['toggle.7c99814d-3ad4-11e4-a400-56847afe9799', true]]);
  const lost = toggle({}, (a) => delete a.tasks?.[1]?.healthCheckResults);
  t.same(
    run([lost], { previousHealth: remembered }).snapshot.services['toggle-0']?.endpoints.map((e) => e.health),
    ['healthy', 'healthy'],
    'results gone (leader change): the last verdict holds',
  );

  const tcp = run([
    toggle(
      {},
      (a) => (a.healthChecks = [{ protocol: 'TCP', portIndex: 0, intervalSeconds: 5, timeoutSeconds: 2, maxConsecutiveFailures: 0 }]),
    ),
  ]);
  t.same(tcp.snapshot.services['toggle-0']?.health, { expectStatus: [200, 399], intervalMs: 5000, timeoutMs: 2000, rise: 2, fall: 1 });
  const cmd = run([toggle({}, (a) => (a.healthChecks = [{ protocol: 'COMMAND' }]))]);
  t.equal(cmd.snapshot.services['toggle-0']?.health, undefined);
  t.match(warningsOf(cmd), [/COMMAND health check/]);
  const none = run([plain({})]);
  t.same(
    none.snapshot.services['toggle-0']?.endpoints.map((e) => e.health),
    ['unknown', 'unknown'],
    'no checks: no verdict, served',
  );
  t.equal(run([toggle({})], { activeHealthChecks: false }).snapshot.services['toggle-0']?.health, undefined);
  t.equal(
    run([toggle({ HAPROXY_GROUP: 'other' })]).snapshot.services['toggle-0']?.health,
    undefined,
    'not served here: no active checks from us',
  );
});

t.test('task states: excluded, kept, draining', async (t) => {
  const app = plain({}, (a) => {
    a.tasks = [
      { id: 't.running', host: '10.0.0.1', ports: [31001], state: 'TASK_RUNNING' },
      { id: 't.staging', host: '10.0.0.2', ports: [31002], state: 'TASK_STAGING' },
      { id: 't.killed', host: '10.0.0.3', ports: [31003], state: 'TASK_KILLED' },
      { id: 't.killing', host: '10.0.0.4', ports: [31004], state: 'TASK_KILLING' },
      { id: 't.unreachable', host: '10.0.0.5', ports: [31005], state: 'TASK_UNREACHABLE' },
      { id: 't.drain', host: '10.0.0.6', ports: [31006], state: 'TASK_RUNNING', draining: true },
      { id: 't.nohost', host: '', ports: [31007], state: 'TASK_RUNNING' },
      { id: 't.named', host: 'agent-9.example', ports: [31008], state: 'TASK_RUNNING' },
    ];
  });
  const eps =
    run([app], { resolveHost: (h) => (h === 'agent-9.example' ? '10.0.0.9' : undefined) }).snapshot.services['toggle-0']?.endpoints ?? [];
  t.same(
    eps.map((e) => [e.taskId, e.health, e.weight]),
    [
      ['t.running', 'unknown', 1],
      ['t.killing', 'draining', 0],
      ['t.unreachable', 'unknown', 1],
      ['t.drain', 'draining', 0],
      ['t.named', 'unknown', 1],
    ],
  );
  const unresolved = run([app]);
  t.match(warningsOf(unresolved), [/agent "agent-9.example" left out: the host name does not resolve/]);
});

t.test('two app ids with one Mesos-DNS name get distinct services', async (t) => {
  const a = plain({}, (x) => (x.id = '/grp/app'));
  const b = plain({}, (x) => {
    x.id = '/app-grp';
    x.ports = [10001];
  });
  const r = run([b, a]);
  const names = Object.keys(r.snapshot.services).sort();
  t.equal(names.length, 2);
  t.ok(names.includes('app-grp-0'));
  t.ok(names.some((n) => /^app-grp-0-[0-9a-f]{6}$/.test(n)));
  t.match(warningsOf(r), [/service name app-grp-0 is already \/app-grp's/]);
  t.same(
    Object.values(r.snapshot.services)
      .map((s) => s.endpoints[0]?.task)
      .sort(),
    ['app-grp', 'app.grp'],
    'both keep their Mesos task name',
  );
});

t.test('garbage never throws: bad apps are skipped with a reason', async (t) => {
  const junk: unknown[] = [
    null,
    42,
    'app',
    [],
    {},
    { id: '' },
    { id: '/' },
    { id: '/x', labels: 'nope', portDefinitions: 'nope', tasks: {} },
    {
      id: '/y',
      labels: { HAPROXY_0_VHOST: 7 },
      portDefinitions: [null, { port: 'x' }],
      tasks: [null, { host: 5, ports: 'a' }, { host: '10.0.0.1', ports: [70000] }],
    },
    {
      id: '/z',
      container: { portMappings: [{ containerPort: 'x' }] },
      networks: [{ mode: 'container' }],
      tasks: [{ host: '10.0.0.1', ipAddresses: [{ ipAddress: 'not-an-ip' }] }],
    },
    { id: '/v', tasks: [{ host: '10.0.0.1', ports: [1] }] },
    {
      id: '/w',
      portDefinitions: [{ port: 0 }],
      healthChecks: [null, 5, { protocol: 7 }],
      tasks: [{ host: '10.0.0.1', ports: [1], healthCheckResults: [null] }],
    },
  ];
  const r = translateApps(junk, OPTS);
  t.ok(r.snapshot.services['x'] === undefined);
  t.same(Object.keys(r.snapshot.services).sort(), ['w-0', 'y-0', 'y-1', 'z-0'], 'an app without ports has no service (/v)');
  t.same(
    r.snapshot.services['w-0']?.endpoints.map((e) => e.health),
    ['unhealthy'],
    'a null result is not alive',
  );
  t.ok(r.warnings.some((w) => w.message.includes('app without an "id"')));
  t.ok(r.warnings.some((w) => w.message.includes('not an app object')));
});

t.test('an app defined twice: the first wins', async (t) => {
  const a = plain({});
  const b = plain({}, (x) => (x.ports = [10005]));
  const r = run([a, b]);
  t.same(r.snapshot.services['toggle-0']?.vips, [{ address: '127.0.0.1', port: 10000, protocol: 'tcp' }]);
  t.match(warningsOf(r), [/defined more than once/]);
});

t.test('two apps on one service port: the second is not bound again', async (t) => {
  const a = toggle({}, (x) => (x.id = '/a'));
  const b = toggle({}, (x) => (x.id = '/b'));
  const r = run([a, b]);
  t.equal(Object.keys(r.snapshot.entrypoints).length, 1);
  t.match(warningsOf(r), [/service port 127.0.0.1:10000 is already bound by another app/]);
});
