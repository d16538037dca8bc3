/**
 * The Consul tag/meta convention (translate.ts), pure: Consul health entries in the documented
 * `/v1/health/service/<name>` shape in, snapshot parts and warnings out.
 */
import t from 'tap';
import { normaliseKey, parseVip, translateService } from '../../../src/providers/consul/index.js';
import type { ConsulHealthEntry, TranslateOptions } from '../../../src/providers/consul/index.js';

const opts: TranslateOptions = { provider: 'consul', framework: 'consul', entrypoint: 'web', exposedByDefault: true };

function entry(o: {
  node?: string;
  nodeAddress?: string;
  id?: string;
  name?: string;
  address?: string;
  port?: number;
  tags?: string[];
  meta?: Record<string, string>;
  kind?: string;
  weights?: { Passing: number; Warning: number };
  status?: string;
}): ConsulHealthEntry {
  const id = o.id ?? 'web-1';
  return {
    Node: { Node: o.node ?? 'node1', Address: o.nodeAddress ?? '10.0.0.1' },
    Service: {
      ID: id,
      Service: o.name ?? 'web',
      Tags: o.tags ?? [],
      Address: o.address ?? '',
      Port: o.port ?? 8080,
      Meta: o.meta ?? {},
      ...(o.weights && { Weights: o.weights }),
      Kind: o.kind ?? '',
    },
    Checks: [
      { CheckID: 'serfHealth', Status: 'passing' },
      { CheckID: `service:${id}`, Status: o.status ?? 'passing', ServiceID: id },
    ],
  };
}

t.test('keys: tags and meta spell one key; only portico.* is ours', async (t) => {
  t.equal(normaliseKey('portico.http.redirectToHttps'), 'http.redirecttohttps');
  t.equal(normaliseKey('portico-http-redirectToHttps'), 'http.redirecttohttps');
  t.equal(normaliseKey('PORTICO_VIP_UDP'), 'vip.udp');
  t.equal(normaliseKey('traefik.enable'), undefined);
});

t.test('endpoints: service address, else the node address; meta as labels; weights; sorted', async (t) => {
  const out = translateService(
    {
      name: 'web',
      catalogTags: [],
      entries: [
        entry({
          node: 'n2',
          nodeAddress: '10.0.0.2',
          id: 'web-b',
          address: '',
          port: 9002,
          meta: { version: 'v2' },
          weights: { Passing: 3, Warning: 1 },
        }),
        entry({ node: 'n1', nodeAddress: '10.0.0.1', id: 'web-a', address: '10.1.0.10', port: 9001 }),
        entry({ node: 'n3', nodeAddress: '10.0.0.3', id: 'web-c', address: 'fd00:0:0::1', port: 9003 }),
      ],
    },
    opts,
  );
  const s = out.service!;
  t.same(
    s.endpoints.map((e) => `${e.address}:${e.port}`),
    ['10.0.0.2:9002', '10.1.0.10:9001', 'fd00::1:9003'],
    'node address fallback, IPv6 normalised, v4 before v6',
  );
  t.same(s.endpoints[0], {
    address: '10.0.0.2',
    port: 9002,
    weight: 3,
    health: 'healthy',
    taskId: 'n2/web-b',
    labels: { version: 'v2' },
    agentAddress: '10.0.0.2',
  });
  t.equal(s.endpoints[1]!.agentAddress, '10.0.0.1', 'agent address is the node address even when the service has its own');
  t.equal(s.framework, 'consul');
  t.same(s.balance, { algorithm: 'roundrobin' });
  t.same(out.routes, [], 'no host tag, no route');
  t.same(out.warnings, []);
});

t.test('routes, VIPs, balance and framework from tags and meta', async (t) => {
  const out = translateService(
    {
      name: 'shop',
      catalogTags: [],
      entries: [
        entry({
          name: 'shop',
          tags: [
            'portico.http.host=Shop.Example.test, www.example.test',
            'portico.http.path=/api',
            'portico.http.stripPrefix=/api',
            'portico.vip=/db:5432,10.9.0.1:5433',
            'portico.vip.udp=/dns:53',
            'plain-tag',
            'portico.balance=leastconn',
          ],
          meta: { 'portico-http-redirectToHttps': 'true', 'portico-http-entrypoint': 'websecure', portico_framework: 'marathon' },
        }),
      ],
    },
    opts,
  );
  t.same(out.warnings, []);
  t.same(out.routes, [
    {
      id: 'consul/shop/shop.example.test/api',
      entrypoint: 'websecure',
      host: 'shop.example.test',
      path: '/api',
      pathMatch: 'prefix',
      service: 'shop',
      stripPrefix: '/api',
      redirectToHttps: true,
    },
    {
      id: 'consul/shop/www.example.test/api',
      entrypoint: 'websecure',
      host: 'www.example.test',
      path: '/api',
      pathMatch: 'prefix',
      service: 'shop',
      stripPrefix: '/api',
      redirectToHttps: true,
    },
  ]);
  t.same(out.service!.vips, [
    { address: '10.9.0.1', port: 5433, protocol: 'tcp' },
    { name: 'db', port: 5432, protocol: 'tcp' },
    { name: 'dns', port: 53, protocol: 'udp' },
  ]);
  t.same(out.service!.balance, { algorithm: 'leastconn' });
  t.equal(out.service!.framework, 'marathon');
});

t.test('a tag wins over meta on one instance', async (t) => {
  const out = translateService(
    {
      name: 'web',
      catalogTags: [],
      entries: [entry({ tags: ['portico.http.host=a.example.test', 'portico.http.path=/tag'], meta: { 'portico-http-path': '/meta' } })],
    },
    opts,
  );
  t.equal(out.routes[0]!.path, '/tag');
});

t.test('instances that disagree: union of hosts, majority for single values, each reported', async (t) => {
  const out = translateService(
    {
      name: 'web',
      catalogTags: [],
      entries: [
        entry({ node: 'n1', nodeAddress: '10.0.0.1', tags: ['portico.http.host=a.example.test', 'portico.balance=leastconn'] }),
        entry({ node: 'n2', nodeAddress: '10.0.0.2', tags: ['portico.http.host=a.example.test', 'portico.balance=leastconn'] }),
        entry({ node: 'n3', nodeAddress: '10.0.0.3', tags: ['portico.http.host=b.example.test', 'portico.balance=p2c'] }),
      ],
    },
    opts,
  );
  t.same(
    out.routes.map((r) => r.host),
    ['a.example.test', 'b.example.test'],
    'hosts: union',
  );
  t.same(out.service!.balance, { algorithm: 'leastconn' }, 'majority');
  t.equal(out.warnings.length, 2);
  t.match(out.warnings.join('\n'), /disagree on portico\.balance: "leastconn" on 2, "p2c" on 1; using "leastconn"/);
  t.match(
    out.warnings.join('\n'),
    /disagree on portico\.http\.host: \[a\.example\.test\] on 2, \[b\.example\.test\] on 1; serving the union/,
  );
});

t.test('enable: false skips; exposedByDefault false needs enable=true', async (t) => {
  const off = translateService(
    { name: 'web', catalogTags: [], entries: [entry({ tags: ['portico.enable=false', 'portico.http.host=a.example.test'] })] },
    opts,
  );
  t.equal(off.service, undefined);
  t.same(off.routes, []);
  t.equal(off.skipped, 'portico.enable=false');

  const strict = { ...opts, exposedByDefault: false };
  t.equal(translateService({ name: 'web', catalogTags: [], entries: [entry({})] }, strict).service, undefined);
  t.ok(translateService({ name: 'web', catalogTags: [], entries: [entry({ meta: { 'portico-enable': 'true' } })] }, strict).service);
});

t.test('Connect proxies and gateways are not applications', async (t) => {
  const out = translateService(
    { name: 'web-sidecar-proxy', catalogTags: [], entries: [entry({ kind: 'connect-proxy', tags: ['portico.http.host=a.example.test'] })] },
    opts,
  );
  t.equal(out.service, undefined);
  t.match(out.skipped, /connect-proxy/);
  const mixed = translateService(
    {
      name: 'web',
      catalogTags: [],
      entries: [entry({ node: 'n1' }), entry({ node: 'n2', nodeAddress: '10.0.0.2', kind: 'connect-proxy' })],
    },
    opts,
  );
  t.equal(mixed.service!.endpoints.length, 1, 'the proxy instance is left out, the app kept');
});

t.test('bad values are warnings, never a crash', async (t) => {
  const out = translateService(
    {
      name: 'web',
      catalogTags: [],
      entries: [
        entry({
          tags: [
            'portico.http.host=bad_host!,ok.example.test',
            'portico.http.path=api',
            'portico.vip=/db:99999',
            'portico.vip.udp=nope',
            'portico.balance=fastest',
            'portico.enable=perhaps',
            'portico.http.typo=1',
            'portico.http.redirectToHttps=sure',
          ],
        }),
        entry({ node: 'n2', id: 'web-2', address: 'web.service.consul', port: 80 }),
        entry({ node: 'n3', id: 'web-3', nodeAddress: '10.0.0.3', port: 0 }),
      ],
    },
    opts,
  );
  const w = out.warnings.join('\n');
  t.match(w, /"bad_host!" is not a valid host/);
  t.match(w, /portico\.http\.path: "api" is not a path/);
  t.match(w, /portico\.vip="\/db:99999": not a VIP/);
  t.match(w, /portico\.vip\.udp="nope": not a VIP/);
  t.match(w, /portico\.balance: "fastest" is not a balance algorithm/);
  t.match(w, /portico\.enable="perhaps" is not true or false/);
  t.match(w, /unknown convention key "portico\.http\.typo"/);
  t.match(w, /redirectToHttps="sure"/);
  t.match(w, /address "web\.service\.consul" is not an IP address/);
  t.match(w, /port 0 is not 1\.\.65535/);
  t.same(
    out.routes.map((r) => `${r.host}${r.path}`),
    ['ok.example.test/'],
    'the good host stays, with the default path',
  );
  t.same(out.service!.vips, []);
  t.same(
    out.service!.endpoints.map((e) => e.address),
    ['10.0.0.1'],
  );
});

t.test('no instance passing: routes and VIPs stay, from the catalog tags and the last meta', async (t) => {
  const out = translateService(
    {
      name: 'web',
      entries: [],
      catalogTags: ['portico.http.host=a.example.test', 'portico.vip=/web:80'],
      fallbackMeta: [{ 'portico-http-path': '/app' }],
    },
    opts,
  );
  t.same(out.service!.endpoints, []);
  t.same(
    out.routes.map((r) => `${r.host}${r.path}`),
    ['a.example.test/app'],
  );
  t.same(out.service!.vips, [{ name: 'web', port: 80, protocol: 'tcp' }]);
});

t.test('VIP syntax as dcos-l4lb reads VIP_n labels', async (t) => {
  t.same(parseVip('/grp/app:80', 'tcp'), { name: 'grpapp', port: 80, protocol: 'tcp' });
  t.same(parseVip('[fd00::9]:443', 'tcp'), { address: 'fd00::9', port: 443, protocol: 'tcp' });
  t.same(parseVip('db:5432', 'udp'), { name: 'db', port: 5432, protocol: 'udp' });
  t.type(parseVip(':80', 'tcp'), 'string');
});
