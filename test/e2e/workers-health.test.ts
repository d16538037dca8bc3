/**
 * End to end, one health checker for all the workers of `portico up` (src/workers/messages.ts): the real
 * supervisor, control and two worker processes, two real backends with an HTTP health check.
 * - only worker 0 probes: every probe a backend receives comes from its process (the backend looks up which
 *   process holds the connecting socket, in /proc, while the probe waits for its answer);
 * - a backend that stops answering is found DOWN by worker 0, and worker 1 takes that verdict: over many
 *   fresh connections (both workers take some) no request is sent to it — none fails, no connect to it;
 * - worker 0 killed with SIGKILL: its replacement starts with the backend DOWN (no request reaches it, and its
 *   own failing probes find no transition to report) and probes on; worker 1 still never probes;
 * - the control killed with SIGKILL: worker 0 hands the new one the DOWN verdict, which a replaced worker 1
 *   is then handed in turn.
 */
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runPortico, type LogLine } from '../helpers/portico.js';
import { Recorder, waitFor } from '../helpers/wait.js';

const config = (a: number, b: number) => `
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
      - { address: 127.0.0.1, port: ${a} }
      - { address: 127.0.0.1, port: ${b} }
    health: { http: /healthz, interval: 300ms, timeout: 1s, rise: 2, fall: 2 }
routes:
  - { entrypoint: web, host: app.example.test, path: /, service: web }
`;

/**
 * The process (of `pids`) that holds the client side of the loopback connection from `clientPort` to
 * `serverPort`: its socket's inode from /proc/net/tcp, then the process with a descriptor on it.
 */
function holder(clientPort: number, serverPort: number, pids: Iterable<number>): number | undefined {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  let inode: string | undefined;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(clientPort)}`) && f[2]?.endsWith(`:${hex(serverPort)}`) && f[9] !== '0') inode = f[9];
  }
  if (!inode) return undefined;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

interface Probe {
  backend: 'a' | 'b';
  pid: number | undefined;
}

const onLinux = { skip: !existsSync('/proc/net/tcp') && 'the backends find the probing process in /proc' };

t.test('workers: one prober (worker 0), its verdicts taken by the other worker and by its replacement', onLinux, async (t) => {
  /** Portico's log lines, once it runs. */
  const logs: LogLine[][] = [];
  /** Worker processes, from their first log line (a probe from any other process is `undefined`). */
  const workerPids = () => (logs[0] ?? []).filter((l) => l.msg === 'worker: waiting for the first table').map((l) => l.pid as number);
  const probes = new Recorder<Probe>();
  const requests: Array<'a' | 'b'> = [];
  const backend = async (name: 'a' | 'b') => {
    const server = http.createServer((req, res) => {
      if (req.url === '/healthz') {
        // The probe waits for this answer: its socket is open while we look up whose it is.
        probes.push({ backend: name, pid: holder(req.socket.remotePort!, req.socket.localPort!, workerPids()) });
        res.end('ok');
        return;
      }
      requests.push(name);
      res.end(name);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      server.closeAllConnections();
      server.close();
    });
    return { server, port: (server.address() as AddressInfo).port };
  };
  const a = await backend('a');
  const b = await backend('b');
  const bKey = `127.0.0.1:${b.port}`;

  const dir = t.testdir();
  const cfg = path.join(dir, 'portico.yaml');
  await writeFile(cfg, config(a.port, b.port));
  const p = runPortico(['up', '--config', cfg], { cwd: dir, env: { PORTICO_LOG_LEVEL: 'debug' } });
  logs.push(p.logs);
  t.teardown(() => p.kill('SIGKILL'));
  const upLine = await p.waitForLog((l) => l.msg === 'portico is up', 60_000);
  let api = upLine.api as string;
  const token = (await readFile(path.join(dir, 'data', 'api-token'), 'utf8')).trim();
  const get = async (pathname: string) => {
    const res = await fetch(`${api}${pathname}`, { headers: { authorization: `Bearer ${token}` } });
    return (pathname === '/metrics' ? await res.text() : await res.json()) as any;
  };
  /** One sample of the merged scrape (0 when absent). */
  const sample = async (name: string, labels = ''): Promise<number> => {
    const line = ((await get('/metrics')) as string).split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  const workers = async () => (await get('/v1/workers')).workers as Array<{ worker: number; pid: number; live: boolean }>;
  const before = await workers();
  const leader = before.find((w) => w.worker === 0)!.pid;
  const follower = before.find((w) => w.worker === 1)!.pid;
  t.same(workerPids().sort(), [leader, follower].sort(), 'both worker processes known');
  const modes = Object.fromEntries(
    p.logs.filter((l) => l.msg === 'worker: waiting for the first table').map((l) => [l.worker as number, l.health]),
  );
  t.same(modes, { 0: 'probe', 1: 'follow' }, 'worker 0 probes, worker 1 follows');

  const port = Number(
    String(p.logs.find((l) => l.msg === 'l7: listening')?.listen)
      .split(':')
      .pop(),
  );
  const request = () =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', headers: { host: 'app.example.test' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
  const access = (from: number) => p.logs.slice(from).filter((l) => l.component === 'access');
  /** Fresh connections until both worker processes served some (at least `min` requests); all must be answered by `a`. */
  const burst = async (from: number, min: number, what: string) => {
    const bodies = new Set<string>();
    let sent = 0;
    for (; sent < 400 && (sent < min || new Set(access(from).map((l) => l.pid)).size < 2); sent++) {
      const r = await request();
      bodies.add(`${r.status} ${r.body}`);
    }
    t.same([...bodies], ['200 a'], `${what}: ${sent} requests, every one answered by the backend that is up`);
    t.equal(new Set(access(from).map((l) => l.pid)).size, 2, `${what}: both workers served some`);
  };

  // Only worker 0 probes. If both did, worker 1's probes would have come in as often as worker 0's.
  await probes.until(() => probes.items.filter((x) => x.pid === leader).length >= 10, 20_000, '10 probes from worker 0');
  t.same(
    [...new Set(probes.items.map((x) => x.pid))],
    [leader],
    `all ${probes.items.length} probes came from worker 0 (pid ${leader}), none from worker 1 (pid ${follower})`,
  );
  // The checks are counted once, by the one that probes: the merged counter is what the backends saw.
  const seenBefore = probes.items.length;
  const checks = await sample('portico_l7_health_checks_total');
  const seenAfter = probes.items.length;
  t.ok(
    checks >= seenBefore - 2 && checks <= seenAfter,
    `portico_l7_health_checks_total ${checks}: the ${seenBefore}..${seenAfter} probes the backends saw`,
  );

  // b stops answering: worker 0 finds it DOWN, worker 1 takes the verdict.
  const markDown = p.logs.length;
  b.server.closeAllConnections();
  await new Promise<void>((r) => b.server.close(() => r()));
  const downLine = await p.waitForLog((l) => l.msg === 'endpoint down' && l.endpoint === bKey, 15_000, markDown);
  t.equal(downLine.worker, 0, 'worker 0 found it down');
  const shared = await p.waitForLog((l) => l.msg === 'endpoint down (shared verdict)' && l.endpoint === bKey, 15_000, markDown);
  t.equal(shared.worker, 1, 'worker 1 took the verdict');
  t.same(
    p.logs.filter((l) => l.msg === 'endpoint down' || l.msg === 'endpoint up').map((l) => l.worker),
    [0],
    'the transition is logged once, by worker 0',
  );
  const failures = () => sample('portico_l7_upstream_connect_failures_total', `endpoint="${bKey}"`);
  const retries = () => sample('portico_l7_retries_total');
  let f0 = await failures();
  let r0 = await retries();
  const requestsBefore = requests.length;
  await burst(p.logs.length, 40, 'b DOWN');
  t.equal(await failures(), f0, 'no connect to b was tried');
  t.equal(await retries(), r0, 'no request was retried');
  t.same(requests.slice(requestsBefore), Array(requests.length - requestsBefore).fill('a'));

  // Worker 0 killed: its replacement starts with b DOWN and probes on.
  const markKill = p.logs.length;
  process.kill(leader, 'SIGKILL');
  const serving = await p.waitForLog((l) => l.msg === 'worker: serving' && l.worker === 0 && l.pid !== leader, 60_000, markKill);
  const replacement = serving.pid as number;
  t.equal(
    p.logs.slice(markKill).find((l) => l.msg === 'worker: waiting for the first table' && l.pid === replacement)?.health,
    'probe',
    'the replacement probes',
  );
  f0 = await failures();
  r0 = await retries();
  await burst(markKill, 40, 'after the replacement');
  t.equal(await failures(), f0, 'no connect to b was tried by either worker');
  t.equal(await retries(), r0, 'no request was retried');
  // It probes b (failing) more than `fall` times: handed DOWN, it finds no transition to report.
  await waitFor(async () => (await sample('portico_l7_health_check_failures_total')) >= 3, {
    timeoutMs: 20_000,
    what: 'three failed probes of b by the replacement',
    intervalMs: 100,
  });
  await probes.until((x) => x.pid === replacement && x.backend === 'a', 20_000, 'a probe of a from the replacement', seenAfter);
  t.same(
    p.logs.slice(markKill).filter((l) => l.msg === 'endpoint down' || l.msg === 'endpoint up'),
    [],
    'the replacement kept b DOWN from the verdict it was handed: no transition',
  );
  t.same(
    [...new Set(probes.items.map((x) => x.pid))].sort(),
    [leader, replacement].sort(),
    'every probe came from worker 0 (the first, then its replacement), none from worker 1',
  );

  // The control killed: the new one knows no verdicts; worker 0 hands it those it holds when it gets its
  // table. Then worker 1 is replaced, and is handed b DOWN by the new control.
  const controlPid = upLine.pid as number;
  const markControl = p.logs.length;
  process.kill(controlPid, 'SIGKILL');
  const up2 = await p.waitForLog((l) => l.msg === 'portico is up' && l.pid !== controlPid, 60_000, markControl);
  api = up2.api as string;
  const handed = await p.waitForLog((l) => l.msg === 'health verdicts handed to the workers' && l.pid === up2.pid, 20_000, markControl);
  t.equal(handed.down, 1, 'the new control learnt b DOWN from worker 0');
  const oldFollower = (await workers()).find((w) => w.worker === 1)!.pid;
  t.equal(oldFollower, follower);
  const markFollower = p.logs.length;
  process.kill(follower, 'SIGKILL');
  await p.waitForLog((l) => l.msg === 'worker: serving' && l.worker === 1 && l.pid !== follower, 60_000, markFollower);
  f0 = await failures();
  r0 = await retries();
  await burst(markFollower, 40, 'after worker 1 is replaced');
  t.equal(await failures(), f0, 'no connect to b was tried by either worker');
  t.equal(await retries(), r0, 'no request was retried');
  t.same([...new Set(probes.items.map((x) => x.pid))].sort(), [leader, replacement].sort(), 'still no probe from any worker 1');

  p.kill('SIGTERM');
  t.equal(await p.waitForExit(30_000), 0, 'portico up exits 0');
});
