/**
 * The feeds wired into a real `portico up`: a `consul:` section makes the daemon read the catalog.
 * No Consul binary can be installed here, so Consul is the HTTP api double of test/providers/consul
 * (written from Consul's documented responses: X-Consul-Index, blocking queries, ?passing).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { runPortico } from '../helpers/portico.js';
import { waitFor } from '../helpers/wait.js';
import { ConsulDouble } from '../providers/consul/double.js';

t.test('portico up with consul: catalog services become table services and routes', async (t) => {
  const consul = await ConsulDouble.start();
  t.teardown(() => consul.close());
  consul.register({ name: 'billing', port: 9301, tags: ['portico.http.host=billing.example.test'] });

  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, `
data: ./data
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
overlay: { enabled: false }
entrypoints:
  web: { listen: 127.0.0.1:0 }
consul: { url: ${consul.url} }
`);
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  const up = await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
  const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
  const get = async (p: string) => (await (await fetch(`${up.api as string}${p}`, { headers: { authorization: `Bearer ${token}` } })).json()) as any;

  const table = await waitFor(async () => {
    const tb = await get('/v1/table');
    return tb.services['billing@consul'] ? tb : undefined;
  }, { timeoutMs: 10_000, what: 'billing@consul in the table' });
  t.same(table.services['billing@consul'].endpoints.map((e: any) => `${e.address}:${e.port}`), ['127.0.0.1:9301']);
  t.ok(table.routes.some((r: any) => r.host === 'billing.example.test' && r.service === 'billing@consul'), 'the tag made a route');
  const providers = (await get('/v1/providers')).providers.map((x: any) => x.name);
  t.same(providers, ['file', 'shared', 'consul']);

  // The check fails: the endpoint leaves the served table.
  consul.setCheck('billing', 'critical');
  await waitFor(async () => (await get('/v1/table')).services['billing@consul']?.endpoints.length === 0, { timeoutMs: 10_000, what: 'the failing instance to leave' });
  t.pass('a failing Consul check takes the endpoint out');
});
