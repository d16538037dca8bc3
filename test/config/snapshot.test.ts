import t from 'tap';
import { configToSnapshot, DEFAULT_CONFIG, parseConfigText } from '../../src/config/index.js';
import { sameConfigSnapshot } from '../../src/config/snapshot.js';
import type { PorticoConfig } from '../../src/config/index.js';
import { yaml } from './helpers.js';

const text = yaml`
  entrypoints:
    websecure: { listen: 127.0.0.1:8443, tls: { auto: true } }
    web: { listen: 127.0.0.1:8080, trustedProxies: [10.0.0.0/8] }
  services:
    web:
      framework: Marathon_User
      endpoints:
        - { address: 10.0.0.10, port: 80 }
        - { address: "fd00::1", port: 80 }
        - { address: 10.0.0.2, port: 81 }
        - { address: 10.0.0.2, port: 80, weight: 3, health: healthy, task: web-1 }
      balance: hash(header:X-User)
      health: { http: /healthz }
      vips: [ { name: /grp/Web_App, port: 80 }, { address: 10.9.9.9, port: 8080, protocol: udp } ]
      labels: { team: edge }
    api:
      endpoints: [ { address: 10.0.1.1, port: 9000 } ]
  routes:
    - { entrypoint: web, host: b.example.test, service: web }
    - { entrypoint: web, host: a.example.test, path: /api, service: api, timeouts: { connect: 1s }, maxBody: 1k }
`;

/** The same meaning, written in another order (services, entrypoints, endpoints, keys). */
const reordered = yaml`
  routes:
    - { service: web, host: b.example.test, entrypoint: web }
    - { maxBody: 1024, timeouts: { connect: 1000ms }, service: api, path: /api, host: A.example.test, entrypoint: web }
  services:
    api:
      endpoints: [ { port: 9000, address: 10.0.1.1 } ]
    web:
      labels: { team: edge }
      vips: [ { port: 80, name: /grp/Web_App }, { protocol: udp, port: 8080, address: 10.9.9.9 } ]
      health: { http: /healthz, interval: 2s }
      balance: hash(header:x-user)
      endpoints:
        - { address: 10.0.0.2, port: 80, weight: 3, health: healthy, task: web-1 }
        - { address: "FD00:0::1", port: 80 }
        - { address: 10.0.0.2, port: 81 }
        - { address: 10.0.0.10, port: 80 }
      framework: Marathon_User
  entrypoints:
    web: { trustedProxies: [10.1.1.1/8], listen: 127.0.0.1:8080 }
    websecure: { tls: { auto: true }, listen: 127.0.0.1:8443 }
`;

t.test('translation', async (t) => {
  const snap = configToSnapshot(parseConfigText(text), 'file');
  t.equal(snap.provider, 'file');
  t.same(Object.keys(snap.services), ['api', 'web'], 'services in sorted key order');
  t.same(Object.keys(snap.entrypoints), ['web', 'websecure'], 'entrypoints in sorted key order');

  const web = snap.services.web;
  t.equal(web?.name, 'web');
  t.equal(web?.framework, 'marathon-user', 'framework normalised for DNS');
  t.same(
    web?.endpoints.map((e) => `${e.address}:${e.port}`),
    ['10.0.0.2:80', '10.0.0.2:81', '10.0.0.10:80', 'fd00::1:80'],
    'endpoints sorted by (address, port), v4 numerically before v6',
  );
  t.same(web?.endpoints[0], { address: '10.0.0.2', port: 80, weight: 3, health: 'healthy', task: 'web-1', labels: {} });
  t.same(web?.endpoints[1], { address: '10.0.0.2', port: 81, weight: 1, health: 'unknown', labels: {} }, 'defaults filled');
  t.same(web?.balance, { algorithm: 'hash', hashOn: { kind: 'header', name: 'x-user' } });
  t.same(web?.health, { httpPath: '/healthz', expectStatus: [200, 399], intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 });
  t.same(
    web?.vips,
    [
      { name: 'grpweb-app', port: 80, protocol: 'tcp' },
      { address: '10.9.9.9', port: 8080, protocol: 'udp' },
    ],
    'VIP names sanitised as dcos-l4lb does',
  );
  t.same(web?.labels, { team: 'edge' });

  t.same(
    snap.routes,
    [
      { entrypoint: 'web', host: 'b.example.test', path: '/', pathMatch: 'prefix', service: 'web' },
      {
        entrypoint: 'web',
        host: 'a.example.test',
        path: '/api',
        pathMatch: 'prefix',
        service: 'api',
        timeouts: { connectMs: 1000 },
        maxBodyBytes: 1024,
      },
    ],
    'routes in config order; service is the provider-local name',
  );
  t.same(snap.entrypoints.web, { name: 'web', listen: '127.0.0.1:8080', trustedProxies: ['10.0.0.0/8'] });
  t.same(snap.entrypoints.websecure, {
    name: 'websecure',
    listen: '127.0.0.1:8443',
    trustedProxies: [],
    tls: { auto: true, certificates: [], passthrough: false },
  });
});

t.test('deterministic: same meaning, same snapshot, same JSON', async (t) => {
  const a = configToSnapshot(parseConfigText(text), 'file');
  const b = configToSnapshot(parseConfigText(reordered), 'file');
  t.same(a, b);
  t.equal(JSON.stringify(a), JSON.stringify(b));
  t.equal(JSON.stringify(configToSnapshot(parseConfigText(text), 'file')), JSON.stringify(a), 'twice from the same text');
});

t.test('JSON-clean: no undefined values, no shared mutable state with the config', async (t) => {
  const cfg = parseConfigText(text);
  const snap = configToSnapshot(cfg, 'file');
  t.same(JSON.parse(JSON.stringify(snap)), snap);
  // The config is frozen; the snapshot is a fresh copy the aggregator may freeze or keep.
  t.notOk(Object.isFrozen(snap.services.web?.endpoints));
  snap.services.web?.endpoints.pop();
  t.equal(cfg.services.web?.endpoints.length, 4);
});

t.test('a hand-built config is normalised too', async (t) => {
  const cfg: PorticoConfig = {
    ...DEFAULT_CONFIG,
    services: {
      x: {
        framework: 'My.Framework',
        endpoints: [
          { address: 'FD00:0:0::2', port: 1, weight: 1, health: 'unknown', labels: {}, agentAddress: '0:0::1' },
          { address: 'fd00::1', port: 1, weight: 1, health: 'unknown', labels: {} },
        ],
        balance: { algorithm: 'roundrobin' },
        vips: [{ address: 'FD00::9', port: 53, protocol: 'udp' }],
        labels: {},
      },
    },
  };
  const snap = configToSnapshot(cfg, 'other');
  t.equal(snap.provider, 'other');
  t.equal(snap.services.x?.framework, 'my.framework');
  t.same(
    snap.services.x?.endpoints.map((e) => e.address),
    ['fd00::1', 'fd00::2'],
  );
  t.equal(snap.services.x?.endpoints[1]?.agentAddress, '::1');
  t.equal(snap.services.x?.vips[0]?.address, 'fd00::9');
});

t.test('the default config is an empty snapshot', async (t) => {
  t.same(configToSnapshot(DEFAULT_CONFIG, 'file'), { provider: 'file', services: {}, routes: [], entrypoints: {} });
});

t.test('with the previous config and snapshot, what did not change is the previous object', async (t) => {
  const cfg = parseConfigText(text);
  const first = configToSnapshot(cfg, 'file');
  const again = configToSnapshot(parseConfigText(reordered), 'file', { cfg, snapshot: first });
  t.equal(again.services.web, first.services.web, 'an equal service (written in another order) is reused');
  t.equal(again.services.api, first.services.api);
  t.equal(again.routes[0], first.routes[0], 'an equal route at the same place is reused');
  t.ok(sameConfigSnapshot(first, again), 'the same snapshot');

  const moved = parseConfigText(text.replace('port: 9000', 'port: 9001').replace('a.example.test', 'c.example.test'));
  const next = configToSnapshot(moved, 'file', { cfg, snapshot: first });
  t.equal(next.services.web, first.services.web, 'the unchanged service is the same object');
  t.not(next.services.api, first.services.api, 'the changed one is new');
  t.equal(next.services.api?.endpoints[0]?.port, 9001);
  t.equal(next.routes[0], first.routes[0]);
  t.not(next.routes[1], first.routes[1]);
  t.equal(next.routes[1]?.host, 'c.example.test');
  t.notOk(sameConfigSnapshot(first, next));
  t.same(next, configToSnapshot(moved, 'file'), 'deep-equal to a snapshot made without the previous one');

  const fewer = parseConfigText(yaml`
    entrypoints:
      web: { listen: 127.0.0.1:8080, trustedProxies: [10.0.0.0/8] }
      websecure: { listen: 127.0.0.1:8443, tls: { auto: true } }
    services:
      api:
        endpoints: [ { address: 10.0.1.1, port: 9000 } ]
  `);
  const less = configToSnapshot(fewer, 'file', { cfg, snapshot: first });
  t.notOk(sameConfigSnapshot(first, less), 'a service and the routes gone: not the same');
  t.equal(less.services.api, first.services.api);
});
