/**
 * GET /v1/overlay, GET /v1/overlay/leases, DELETE /v1/overlay/agents/:id on the admin api.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { openOverlay, registerOverlayApi } from '../../src/overlay/index.js';
import { Ipam } from '../../src/overlay/ipam.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { startApi } from '../api/helpers.js';
import { tmpdir } from './helpers.js';

t.test('overlay api', async (t) => {
  const dir = tmpdir('api');
  const store = await EmbeddedStore.open(path.join(dir, 'store'));
  const net = [{ name: 'small', subnet: '10.8.0.0/23', prefix: 24 }];
  const a = await openOverlay({ store, agentId: 'a', agentIp: '192.0.2.1', networks: net, socketPath: null });
  const b = await openOverlay({ store, agentId: 'b', agentIp: '192.0.2.2', networks: net, socketPath: null });
  const c = await openOverlay({ store, agentId: 'c', agentIp: '192.0.2.3', networks: net, socketPath: null });
  t.teardown(async () => {
    for (const o of [a, b, c]) await o.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const { api, request } = await startApi(t);
  registerOverlayApi(api.route.bind(api), c);

  const ipam = new Ipam(store, { agentId: 'a', network: () => net[0], subnet: () => ({ subnet: a.agent().subnets.small! }) });
  await ipam.add(
    { cniVersion: '1.1.0', name: 'n', ipam: { network: 'small' } },
    'ctr1',
    'eth0',
    'PORTICO_SERVICE=web;PORTICO_PORTS=http:80',
  );

  const st = await request('/v1/overlay');
  t.equal(st.status, 200);
  t.match(st.json, {
    agentId: 'c',
    vtep: { device: 'vtep1024', vni: 1024, port: 4789, ip: '44.128.0.3', mac: '70:b3:d5:00:00:03' },
    networks: [{ name: 'small', subnetsTotal: '2', subnetsUsed: 2, error: /no free \/24 left for agent c/ }],
    leases: 1,
  });
  t.same(
    st.json.agents.map((x: { agentId: string }) => x.agentId),
    ['a', 'b', 'c'],
  );
  const leases = await request('/v1/overlay/leases');
  t.same(
    leases.json,
    [
      {
        network: 'n',
        containerId: 'ctr1',
        ifName: 'eth0',
        ips: ['10.8.0.2'],
        agentId: 'a',
        owner: { service: 'web', ports: [{ name: 'http', port: 80, protocol: 'tcp' }] },
      },
    ],
    'leases with the agent that holds them and their owner',
  );
  t.equal((await request('/v1/overlay/agents/b', { method: 'DELETE' })).status, 204);
  t.equal((await request('/v1/overlay/agents/b', { method: 'DELETE' })).status, 404);
  t.same(
    (await request('/v1/overlay')).json.agents.map((x: { agentId: string }) => x.agentId),
    ['a', 'c'],
  );
});
