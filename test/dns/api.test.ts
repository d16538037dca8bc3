/**
 * The Mesos-DNS-compatible lookup api on a real admin api server: rows as Mesos-DNS spells them,
 * ports as strings, the one-empty-row miss answers scripts test for, both path families, the token.
 */
import t from 'tap';
import { canonicalLabel, registerDnsApi } from '../../src/dns/index.js';
import { endpoint, service, snapshot } from '../helpers/snapshot.js';
import { startApi } from '../api/helpers.js';
import { startPlane } from './helpers.js';

const fixture = snapshot('file', {
  services: {
    nginx: service([endpoint('10.0.0.1', 31644, { taskId: 'nginx.1' }), endpoint('10.0.0.2', 31645, { taskId: 'nginx.2' })], {
      name: 'nginx',
    }),
  },
});
const canon = (address: string, port: number, taskId: string) =>
  canonicalLabel('nginx', { address, port, weight: 1, health: 'healthy', labels: {}, taskId }, 'nginx@file');

t.test('lookup api', async (t) => {
  const { plane } = await startPlane(t, [fixture], { upstreams: ['192.0.2.53'] });
  const { api, request } = await startApi(t);
  registerDnsApi(api.route.bind(api), plane);

  const version = await request('/v1/dns/version');
  t.equal(version.status, 200);
  t.match(version.json, { Service: 'Mesos-DNS', URL: 'https://github.com/mesosphere/mesos-dns', Version: /^v\d/ });

  const config = await request('/v1/dns/config');
  t.match(config.json, {
    TTL: 5,
    Domain: 'mesos',
    Resolvers: ['192.0.2.53'],
    SOAMname: 'ns1.mesos.',
    SOARname: 'root.ns1.mesos.',
    RecurseOn: true,
    Port: plane.address().udp.port,
  });

  for (const base of ['/v1/dns', '/v1']) {
    const hosts = await request(`${base}/hosts/nginx.marathon.mesos`);
    t.equal(hosts.status, 200);
    t.same(
      hosts.json,
      [
        { host: 'nginx.marathon.mesos.', ip: '10.0.0.1' },
        { host: 'nginx.marathon.mesos.', ip: '10.0.0.2' },
      ],
      `${base}/hosts`,
    );
    t.same((await request(`${base}/hosts/NGINX.marathon.mesos.`)).json, hosts.json, 'case and trailing dot');
    t.same((await request(`${base}/hosts/nope.marathon.mesos`)).json, [{ host: '', ip: '' }], 'host miss: one empty row');

    const svc = await request(`${base}/services/_nginx._tcp.marathon.mesos.`);
    t.equal(svc.status, 200);
    t.same(
      svc.json,
      [
        {
          service: '_nginx._tcp.marathon.mesos.',
          host: `${canon('10.0.0.1', 31644, 'nginx.1')}.marathon.mesos.`,
          ip: '10.0.0.1',
          port: '31644',
        },
        {
          service: '_nginx._tcp.marathon.mesos.',
          host: `${canon('10.0.0.2', 31645, 'nginx.2')}.marathon.mesos.`,
          ip: '10.0.0.2',
          port: '31645',
        },
      ].sort((a, b) => (a.host < b.host ? -1 : 1)),
      `${base}/services: port as a string, service as asked`,
    );
    const miss = await request(`${base}/services/_nope._tcp.marathon.mesos`);
    t.same(miss.json, [{ service: '', host: '', ip: '', port: '' }], 'service miss: one empty row');
    t.same(Object.keys(miss.json[0]).sort(), ['host', 'ip', 'port', 'service']);
  }

  const en = await request('/v1/dns/enumerate');
  t.equal(en.status, 200);
  const fw = en.json.frameworks.find((f: { name: string }) => f.name === 'marathon');
  t.ok(fw, 'the framework');
  t.same(fw.tasks.map((x: { id: string }) => x.id).sort(), ['nginx.1', 'nginx.2']);
  const task = fw.tasks.find((x: { id: string }) => x.id === 'nginx.1');
  t.ok(
    task.records.some(
      (r: { name: string; host: string; rtype: string }) => r.name === 'nginx.marathon.mesos.' && r.host === '10.0.0.1' && r.rtype === 'A',
    ),
  );
  t.ok(task.records.some((r: { name: string; rtype: string }) => r.name === '_nginx._tcp.marathon.mesos.' && r.rtype === 'SRV'));

  t.equal((await request('/v1/hosts/nginx.marathon.mesos', { token: null })).status, 401, 'the admin token is required');
  const doc = (await request('/v1/openapi.json')).json;
  t.ok(doc.paths['/v1/services/{service}'], 'documented in the OpenAPI document');
  t.ok(doc.paths['/v1/dns/enumerate']);
});

t.test('public when asked', async (t) => {
  const { plane } = await startPlane(t, [fixture]);
  const { api, request } = await startApi(t);
  registerDnsApi(api.route.bind(api), plane, { auth: false });
  t.equal((await request('/v1/hosts/nginx.marathon.mesos', { token: null })).status, 200);
});
