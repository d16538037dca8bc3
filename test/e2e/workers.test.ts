/**
 * End to end, the process shape of `portico up` (src/workers/): the real supervisor, control process and
 * two data-plane worker processes, a real config file, a real backend, real connections.
 * - both workers accept on the one L7 port (the supervisor's shared socket), and DNS answers over UDP;
 * - a new version is reported served by the api only when both workers apply it: right after the api
 *   shows it, every fresh connection (whichever worker takes it) routes by it;
 * - a worker killed with SIGKILL is replaced; a keep-alive connection on the other one is not dropped;
 * - `/metrics` is one scrape: the workers' request counters add up to what their access logs say;
 * - the control process killed with SIGKILL is restarted while the workers keep serving the last table;
 * - SIGTERM stops everything: exit 0, no process left behind.
 */
import t from 'tap';
import http from 'node:http';
import { Resolver } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runPortico, type LogLine } from '../helpers/portico.js';

const config = (routes: string) => `
workers: 2
data: ./data
store: embedded
api: { listen: 127.0.0.1:0 }
dns: { listen: 127.0.0.1:0 }
entrypoints:
  web: { listen: 127.0.0.1:0 }
services:
  web:
    framework: marathon
    endpoints:
      - { address: 127.0.0.1, port: BACKEND }
routes:
${routes}
`;
const route = (host: string) => `  - { entrypoint: web, host: ${host}, path: /, service: web }\n`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('workers: one listener in two processes, versions served by all, a dead worker or control replaced', async (t) => {
  const backend = http.createServer((req, res) => res.end(`ok ${req.url}`));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.teardown(() => backend.close());
  const backendPort = (backend.address() as AddressInfo).port;

  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  const write = (routes: string) => writeFile(cfg, config(routes).replace('BACKEND', String(backendPort)));
  await write(route('a.example.test'));
  const p = runPortico(['up', '--config', cfg], { cwd: dir, env: { PORTICO_LOG_LEVEL: 'debug' } });
  t.teardown(() => p.kill('SIGKILL'));

  const upLine = await p.waitForLog((l) => l.msg === 'portico is up', 60_000);
  t.equal(upLine.workers, 2, 'the control runs two workers');
  const api = upLine.api as string;
  const controlPid = upLine.pid as number;
  t.not(controlPid, p.proc.pid, 'the control is a process of its own');
  const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
  const get = async (pathname: string) => {
    const res = await fetch(`${api}${pathname}`, { headers: { authorization: `Bearer ${token}` } });
    return (pathname === '/metrics' ? await res.text() : await res.json()) as any;
  };

  const listening = p.logs.filter((l) => l.msg === 'l7: listening' && l.entrypoint === 'web');
  t.equal(new Set(listening.map((l) => l.worker)).size, 2, `both workers listen: ${JSON.stringify(listening)}`);
  t.equal(new Set(listening.map((l) => l.listen)).size, 1, 'on the one address');
  const port = Number(String(listening[0]!.listen).split(':').pop());

  const workers = (await get('/v1/workers')).workers as Array<{ worker: number; pid: number; live: boolean; version: number }>;
  t.equal(workers.length, 2);
  t.ok(
    workers.every((w) => w.live && alive(w.pid)),
    'two live worker processes',
  );

  const request = (host: string, agent: http.Agent | false = false, pathname = '/') =>
    new Promise<{ status: number; body: string; localPort: number }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: pathname, headers: { host }, agent }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, localPort: req.socket?.localPort ?? 0 }));
      });
      req.on('error', reject);
    });
  const access = (from = 0) => p.logs.slice(from).filter((l) => l.component === 'access');

  // Both workers take connections (the kernel hands each accept to one of them): bounded.
  let seen = new Set<unknown>();
  for (let i = 0; i < 400 && seen.size < 2; i++) {
    const r = await request('a.example.test');
    t.equal(r.status, 200, 'routed');
    seen = new Set(access().map((l) => l.worker));
  }
  t.equal(seen.size, 2, 'requests were served by both workers');

  // DNS over UDP from a worker, on the supervisor's shared socket.
  const dnsPort = Number(
    String(p.logs.find((l) => l.msg === 'dns listening')?.udp ?? '')
      .split(':')
      .pop(),
  );
  if (Number.isFinite(dnsPort) && dnsPort > 0) {
    const resolver = new Resolver();
    resolver.setServers([`127.0.0.1:${dnsPort}`]);
    t.same(await resolver.resolve4('web.marathon.mesos'), ['127.0.0.1'], 'DNS answers from a worker');
  } else t.fail(`no dns listening line: ${JSON.stringify(p.logs.filter((l) => String(l.msg).startsWith('dns')).slice(0, 3))}`);

  // A new route: once the api reports the version, every fresh connection routes by it.
  const v1 = (await get('/v1/table')).version as number;
  await write(route('a.example.test') + route('b.example.test'));
  await p.waitForLog((l) => l.msg === 'table served' && (l.version as number) > v1 && l.workers === 2, 15_000);
  const v2 = (await get('/v1/table')).version as number;
  t.ok(v2 > v1, 'the api serves the new version');
  const statuses = [];
  for (let i = 0; i < 40; i++) statuses.push((await request('b.example.test')).status);
  t.same([...new Set(statuses)], [200], 'no connection meets a worker that does not have it yet');

  // Kill one worker; a keep-alive connection on the other is not dropped, and a replacement starts.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const mark = p.logs.length;
  const first = await request('a.example.test', agent, '/keepalive-1');
  const line = await p.waitForLog((l) => l.component === 'access' && String(l.path ?? l.url ?? '').includes('keepalive-1'), 10_000, mark);
  const survivor = line.worker as number;
  const victim = workers.find((w) => w.worker !== survivor)!;
  process.kill(victim.pid, 'SIGKILL');
  await p.waitForLog((l) => l.msg === 'data-plane worker exited' && l.workerPid === victim.pid, 10_000, mark);
  const second = await request('a.example.test', agent, '/keepalive-2');
  t.equal(second.status, 200, 'the keep-alive connection still works');
  t.equal(second.localPort, first.localPort, 'on the same connection');
  const replacement = await p.waitForLog(
    (l) => l.msg === 'worker: serving' && l.worker === victim.worker && l.pid !== victim.pid,
    30_000,
    mark,
  );
  t.ok(alive(replacement.pid as number), 'a replacement worker serves');

  // One scrape: requests served by both live workers show in the one sum.
  const l7Total = async () =>
    ((await get('/metrics')) as string)
      .split('\n')
      .filter((l) => l.startsWith('portico_l7_requests_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  const before = await l7Total();
  const markScrape = p.logs.length;
  let sent = 0;
  for (let i = 0; i < 400 && new Set(access(markScrape).map((l) => l.pid)).size < 2; i++) {
    t.equal((await request('a.example.test')).status, 200);
    sent++;
  }
  t.equal(new Set(access(markScrape).map((l) => l.pid)).size, 2, 'both live workers served some');
  t.equal((await l7Total()) - before, sent, `portico_l7_requests_total counts the ${sent} requests of both workers`);
  const metrics = (await get('/metrics')) as string;
  t.match(metrics, /portico_table_version|portico_aggregator/, "the control's own metrics are in the same scrape");

  // The control dies: the workers keep serving the last table while it restarts.
  const beforeRestart = p.logs.length;
  process.kill(controlPid, 'SIGKILL');
  await p.waitForLog(
    (l) => l.msg === 'control process exited; restarting it (the data-plane workers keep serving the last table)',
    10_000,
    beforeRestart,
  );
  let during = 0;
  let restarted: LogLine | undefined;
  for (let i = 0; i < 2_000 && !restarted; i++) {
    const r = await request('b.example.test');
    t.equal(r.status, 200, 'served while the control restarts');
    during++;
    restarted = p.logs.slice(beforeRestart).find((l) => l.msg === 'portico is up');
  }
  restarted ??= await p.waitForLog((l) => l.msg === 'portico is up', 60_000, beforeRestart);
  t.ok(during > 0, `${during} requests served while the control was away`);
  t.not(restarted.pid, controlPid, 'a new control process');
  // The new control's api (port 0: a new port) serves, and an edit reaches the workers.
  const api2 = restarted.api as string;
  await write(route('a.example.test') + route('b.example.test') + route('c.example.test'));
  await p.waitForLog(
    (l) => l.msg === 'table served' && l.workers === 2 && l.pid === restarted!.pid && p.logs.indexOf(l) > p.logs.indexOf(restarted!),
    20_000,
    beforeRestart,
  );
  const table = (await (await fetch(`${api2}/v1/table`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
    routes: Array<{ host: string }>;
  };
  t.ok(
    table.routes.some((r) => r.host === 'c.example.test'),
    'the new control serves the edit',
  );
  t.equal((await request('c.example.test')).status, 200, 'and the workers route it');

  // SIGTERM: a graceful stop of everything.
  const pids = [
    p.proc.pid!,
    restarted.pid as number,
    ...(
      (await (await fetch(`${api2}/v1/workers`, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        workers: Array<{ pid: number }>;
      }
    ).workers.map((w) => w.pid),
  ];
  p.kill('SIGTERM');
  t.equal(await p.waitForExit(30_000), 0, 'portico up exits 0');
  t.same(pids.filter(alive), [], 'no process left behind');
});

t.test('workers: a listen address that is taken fails `portico up` as it did in one process, leaving nothing behind', async (t) => {
  const taken = http.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.teardown(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(
    cfg,
    `workers: 2\ndata: ./data\napi: { listen: 127.0.0.1:0 }\ndns: { listen: "127.0.0.1:${port}" }\nentrypoints:\n  web: { listen: 127.0.0.1:0 }\n`,
  );
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  t.equal(await p.waitForExit(60_000), 1, 'portico up exits 1');
  t.match(p.stderr.join('\n'), new RegExp(`127\\.0\\.0\\.1:${port}`), 'naming the address');
  const pids = p.logs.map((l) => l.pid as number).filter((pid) => typeof pid === 'number');
  t.ok(pids.length > 0, 'the processes logged');
  t.same([...new Set(pids)].filter(alive), [], 'no process left behind');
});

t.test('workers: SIGTERM while the control is still starting (a Marathon that never answers) stops `portico up`', async (t) => {
  // Accepts and holds every connection, answers nothing: the control's first sync waits out its timeout.
  const held = new Set<import('node:net').Socket>();
  const mute = (await import('node:net')).createServer((s) => held.add(s));
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    mute.close();
  });
  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(
    cfg,
    `workers: 1\ndata: ./data\napi: { listen: 127.0.0.1:0 }\ndns: { listen: 127.0.0.1:0 }\nentrypoints:\n  web: { listen: 127.0.0.1:0 }\n` +
      `marathon: { url: "http://127.0.0.1:${(mute.address() as AddressInfo).port}" }\n`,
  );
  const p = runPortico(['up', '--config', cfg], { cwd: dir });
  t.teardown(() => p.kill('SIGKILL'));
  // The control is at its first Marathon request: up() has not resolved.
  await p.waitForLog((l) => l.msg === 'data-plane worker started', 60_000);
  t.notOk(
    p.logs.some((l) => l.msg === 'portico is up'),
    'not up yet',
  );
  p.kill('SIGTERM');
  t.equal(await p.waitForExit(120_000), 0, 'portico up exits 0 once the start it was in has ended');
  const pids = [...new Set(p.logs.map((l) => l.pid).filter((pid): pid is number => typeof pid === 'number'))];
  t.same(pids.filter(alive), [], 'no process left behind');
});
