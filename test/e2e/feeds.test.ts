/**
 * The feeds wired into a real `portico up`: a `consul:` section makes the daemon read the catalog, a
 * `marathon:` section Marathon's REST api, and `<config dir>/apps/*.json` app files are read always.
 * No Consul binary can be installed here, so Consul is the HTTP api double of test/providers/consul
 * (written from Consul's documented responses: X-Consul-Index, blocking queries, ?passing); Marathon is
 * the api double of test/providers/marathon serving JSON from Marathon's documentation.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { runPortico } from '../helpers/portico.js';
import { waitFor } from '../helpers/wait.js';
import { ConsulDouble } from '../providers/consul/double.js';
import { MarathonDouble } from '../providers/marathon/api-double.js';

/** `portico up` in `dir` on a minimal config plus `feedYaml`; the api address and an authenticated GET. */
async function upWith(t: Test, dir: string, feedYaml: string): Promise<{ api: string; get: (p: string) => Promise<any> }> {
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(
    cfg,
    `
data: ./data
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
overlay: { enabled: false }
entrypoints:
  web: { listen: 127.0.0.1:0 }
${feedYaml}
`,
  );
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  // A graceful stop, waited for: a SIGKILLed supervisor leaves its control stopping (and writing its store)
  // while tap removes the test directory (ENOTEMPTY). SIGKILL only if it does not stop.
  t.teardown(async () => {
    p.kill('SIGTERM');
    await p.waitForExit(30_000).catch(() => p.kill('SIGKILL'));
  });
  const up = await p.waitForLog((l) => l.msg === 'portico is up', 30_000);
  const api = up.api as string;
  const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
  return { api, get: async (p) => (await (await fetch(`${api}${p}`, { headers: { authorization: `Bearer ${token}` } })).json()) as any };
}

t.test('portico up with consul: catalog services become table services and routes', async (t) => {
  const consul = await ConsulDouble.start();
  t.teardown(() => consul.close());
  consul.register({ name: 'billing', port: 9301, tags: ['portico.http.host=billing.example.test'] });

  const dir = t.testdir();
  const { get, api } = await upWith(t, dir, `consul: { url: ${consul.url} }`);

  const table = await waitFor(
    async () => {
      const tb = await get('/v1/table');
      return tb.services['billing@consul'] ? tb : undefined;
    },
    { timeoutMs: 10_000, what: 'billing@consul in the table' },
  );
  t.same(
    table.services['billing@consul'].endpoints.map((e: any) => `${e.address}:${e.port}`),
    ['127.0.0.1:9301'],
  );
  t.ok(
    table.routes.some((r: any) => r.host === 'billing.example.test' && r.service === 'billing@consul'),
    'the tag made a route',
  );
  const providers = (await get('/v1/providers')).providers;
  t.same(
    providers.map((x: any) => x.name),
    ['file', 'shared', 'marathon-apps', 'consul'],
  );
  t.equal(providers.find((x: any) => x.name === 'marathon-apps').state, 'ok', 'no apps directory is not an error');
  t.equal(((await (await fetch(`${api}/readyz`)).json()) as any).degraded, false, 'nothing degraded');

  // The check fails: the endpoint leaves the served table.
  consul.setCheck('billing', 'critical');
  await waitFor(async () => (await get('/v1/table')).services['billing@consul']?.endpoints.length === 0, {
    timeoutMs: 10_000,
    what: 'the failing instance to leave',
  });
  t.pass('a failing Consul check takes the endpoint out');
});

t.test('portico up with marathon and app files: apps become services, marathon-lb labels routes, warnings reach the table', async (t) => {
  const marathon = new MarathonDouble();
  marathon.apps = (
    JSON.parse(await readFile(path.join(__dirname, '..', 'providers', 'marathon', 'fixtures', 'apps.json'), 'utf8')) as {
      apps: Array<Record<string, unknown>>;
    }
  ).apps;
  await marathon.start();
  t.teardown(() => marathon.stop());

  const dir = t.testdir();
  await mkdir(path.join(dir, 'apps'));
  await writeFile(
    path.join(dir, 'apps', 'shop.json'),
    JSON.stringify({
      id: '/shop/web',
      portDefinitions: [{ port: 0, protocol: 'tcp' }],
      labels: { HAPROXY_0_VHOST: 'shop.example.test', HAPROXY_0_BACKEND_HEAD: 'custom template' },
      tasks: [{ id: 'shop_web.1', host: '127.0.0.1', ports: [9401], state: 'TASK_RUNNING' }],
    }),
  );
  const { get } = await upWith(t, dir, `marathon: { url: ${marathon.url}, bindServicePorts: false }`);

  const table = await waitFor(
    async () => {
      const tb = await get('/v1/table');
      return tb.routes.some((r: any) => r.host === 'myvhost.com') && tb.routes.some((r: any) => r.host === 'shop.example.test')
        ? tb
        : undefined;
    },
    { timeoutMs: 15_000, what: 'routes from Marathon and from the app file' },
  );
  t.match(
    table.routes.find((r: any) => r.host === 'myvhost.com').service,
    /@marathon$/,
    'HAPROXY_0_VHOST of a Marathon app (group external)',
  );
  t.match(table.routes.find((r: any) => r.host === 'shop.example.test').service, /@marathon-apps$/, 'the app file');
  t.ok(
    table.warnings.some((w: any) => w.provider === 'marathon-apps' && /BACKEND_HEAD/.test(w.message)),
    'the unsupported template label is reported in the table',
  );
  const providers = (await get('/v1/providers')).providers;
  t.same(
    providers.map((x: any) => x.name),
    ['file', 'shared', 'marathon-apps', 'marathon'],
  );
  t.ok(
    providers.every((x: any) => x.state === 'ok'),
    JSON.stringify(providers.map((x: any) => [x.name, x.state, x.lastError])),
  );
});
