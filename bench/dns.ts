/**
 * `npm run bench -- dns`: the DNS plane beside unbound and dnsmasq, in one run on this machine.
 *
 * The same 1,000 names for all (`app<N>.marathon.mesos A`): Portico serves them from a routing table of
 * 1,000 services (built through the Aggregator, as the daemon does, in a process of its own); unbound
 * (`num-threads: 1`) from `local-data`; dnsmasq from an `--addn-hosts` file. The client is Debian's
 * dnsperf (UDP, 100 queries outstanding, cycling through the names), RUNS runs of DURATION seconds
 * each after a warm-up, medians of queries/s and average latency. All servers run at once and the runs
 * are interleaved (run 1 of every peer, then run 2...), so load from elsewhere on a shared machine
 * falls on every peer alike; the load average is printed. When `taskset` exists, each server
 * is pinned to CPU 0 and dnsperf to CPU 1 (the "server on one core" the goal is stated for).
 * Then Portico's forwarder with a warm cache: 1,000 names that only unbound has (`host<N>.fwd.test`),
 * Portico forwarding to that unbound, queried once to fill the cache, then measured like the rest.
 *
 * Goal (issue 6): Portico's authoritative qps ≥ 0.5× unbound's; cache hits in the same range.
 * This file is also the Portico server process: `node --import tsx bench/dns.ts --serve PORT UPSTREAM`.
 */
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { median, ratio, report, round, say, which } from './lib.js';
import { freePort, startProcess, stopProcess, tmpdir, waitForPort, type Peer } from './peers.js';

const run = promisify(execFile);
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const NAMES = Number(process.env.BENCH_DNS_NAMES ?? 1000);
const OUTSTANDING = 100;

const address = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const fwdAddress = (i: number): string => `172.16.${(i >> 8) & 255}.${i & 255}`;

interface Sample {
  qps: number;
  avgLatencyMs: number;
  lost: number;
  noerror: number;
}

function summarise(samples: Sample[]): Record<string, number> {
  return {
    qps: Math.round(median(samples.map((s) => s.qps))),
    avgLatencyMs: round(median(samples.map((s) => s.avgLatencyMs)), 3),
    lostPct: round(median(samples.map((s) => s.lost)), 3),
  };
}

function parseDnsperf(out: string): Sample {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const completed = num(/Queries completed:\s+(\d+)/);
  const noerror = Number(/NOERROR (\d+)/.exec(out)?.[1] ?? 0);
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    lost: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    noerror: completed > 0 ? noerror / completed : 0,
  };
}

let pin: { server: string[]; client: string[] } = { server: [], client: [] };

async function dnsperf(port: number, file: string, seconds: number, once = false): Promise<Sample> {
  const args = [
    '-s',
    '127.0.0.1',
    '-p',
    String(port),
    '-d',
    file,
    '-q',
    String(OUTSTANDING),
    '-t',
    '2',
    ...(once ? ['-n', '1'] : ['-l', String(seconds)]),
  ];
  const [cmd, ...pre] = pin.client.length ? [...pin.client, 'dnsperf'] : ['dnsperf'];
  const { stdout } = await run(cmd as string, [...pre, ...args], { timeout: (seconds + 30) * 1000, maxBuffer: 16 << 20 });
  const s = parseDnsperf(stdout);
  if (!Number.isFinite(s.qps)) throw new Error(`dnsperf output not understood:\n${stdout}`);
  return s;
}

/** RUNS samples of one peer, after a warm-up; asserts the answers were NOERROR. */
function check(name: string, samples: Sample[]): Record<string, number> {
  const bad = samples.find((x) => x.noerror < 0.99);
  if (bad) throw new Error(`${name}: only ${(bad.noerror * 100).toFixed(1)}% NOERROR answers`);
  const sum = summarise(samples);
  say(`${name.padEnd(18)} ${JSON.stringify(sum)}  runs: ${samples.map((x) => Math.round(x.qps)).join(', ')} qps`);
  return sum;
}

function serverCmd(cmd: string, args: string[]): [string, string[]] {
  return pin.server.length ? [pin.server[0] as string, [...pin.server.slice(1), cmd, ...args]] : [cmd, args];
}

async function startUnbound(bin: string): Promise<Peer> {
  const dir = await tmpdir('unbound');
  const port = await freePort();
  const lines = [
    'server:',
    '  interface: 127.0.0.1',
    `  port: ${port}`,
    '  num-threads: 1',
    '  do-daemonize: no',
    '  chroot: ""',
    '  username: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  do-ip6: no',
    '  access-control: 127.0.0.0/8 allow',
    '  module-config: "iterator"',
    '  local-zone: "mesos." static',
    '  local-zone: "fwd.test." static',
  ];
  for (let i = 0; i < NAMES; i++) lines.push(`  local-data: "app${i}.marathon.mesos. 5 IN A ${address(i)}"`);
  for (let i = 0; i < NAMES; i++) lines.push(`  local-data: "host${i}.fwd.test. 3600 IN A ${fwdAddress(i)}"`);
  lines.push('remote-control:', '  control-enable: no');
  const conf = path.join(dir, 'unbound.conf');
  await writeFile(conf, `${lines.join('\n')}\n`);
  const [cmd, args] = serverCmd(bin, ['-d', '-c', conf]);
  const proc = startProcess(cmd, args);
  await waitForPort(port);
  return {
    name: 'unbound',
    port,
    proc,
    stop: async () => {
      await stopProcess(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startDnsmasq(bin: string): Promise<Peer> {
  const dir = await tmpdir('dnsmasq');
  const port = await freePort();
  const hosts = path.join(dir, 'hosts');
  await writeFile(hosts, Array.from({ length: NAMES }, (_, i) => `${address(i)} app${i}.marathon.mesos`).join('\n') + '\n');
  const [cmd, args] = serverCmd(bin, [
    '--no-daemon',
    '--conf-file=/dev/null',
    '--pid-file=',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    `--addn-hosts=${hosts}`,
    '--local-ttl=5',
    '--user=',
    '--group=',
  ]);
  const proc = startProcess(cmd, args);
  await waitForPort(port);
  return {
    name: 'dnsmasq',
    port,
    proc,
    stop: async () => {
      await stopProcess(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function startPortico(upstream: string): Promise<Peer> {
  const port = await freePort();
  const [cmd, args] = serverCmd(process.execPath, ['--import', 'tsx', __filename, '--serve', String(port), upstream]);
  const proc = startProcess(cmd, args, { cwd: path.join(__dirname, '..') });
  await waitForPort(port, '127.0.0.1', 30_000); // readiness: the plane binds UDP, then TCP
  return { name: 'portico', port, proc, stop: () => stopProcess(proc) };
}

export async function main(): Promise<void> {
  const dnsperfBin = which('dnsperf');
  // Both live in /usr/sbin, which a non-root PATH may lack.
  const unboundBin = which('unbound') ?? which('/usr/sbin/unbound');
  const dnsmasqBin = which('dnsmasq') ?? which('/usr/sbin/dnsmasq');
  const skipped: Record<string, string> = {};
  const results: Record<string, Record<string, unknown>> = {};
  if (which('taskset')) pin = { server: ['taskset', '-c', '0'], client: ['taskset', '-c', '1'] };
  say(
    `dns bench: ${RUNS} runs × ${DURATION_S}s, ${NAMES} names, dnsperf UDP ${OUTSTANDING} outstanding${pin.server.length ? ', servers on CPU 0, dnsperf on CPU 1' : ''}; load average ${os.loadavg()[0]?.toFixed(2)}`,
  );
  if (!dnsperfBin) {
    const why = 'dnsperf is not installed (apt-get install dnsperf)';
    for (const p of ['portico', 'unbound', 'dnsmasq', 'portico-forwarder']) skipped[p] = why;
    say(why);
    report({
      bench: 'dns',
      runs: RUNS,
      results: Object.fromEntries(Object.entries(skipped).map(([k, v]) => [k, { skipped: v }])),
      ratios: { vsUnbound: null, vsDnsmasq: null, forwarderVsUnbound: null },
    });
    return;
  }

  const dir = await tmpdir('dnsperf');
  const authFile = path.join(dir, 'auth.txt');
  const fwdFile = path.join(dir, 'fwd.txt');
  await writeFile(authFile, Array.from({ length: NAMES }, (_, i) => `app${i}.marathon.mesos A`).join('\n') + '\n');
  await writeFile(fwdFile, Array.from({ length: NAMES }, (_, i) => `host${i}.fwd.test A`).join('\n') + '\n');

  // Every server up at once (idle ones cost nothing), then the runs interleaved — run 1 of each peer,
  // run 2 of each... — so load from elsewhere on the machine falls on all peers alike.
  const peers: Array<{ name: string; port: number; file: string }> = [];
  const started: Peer[] = [];
  try {
    let unbound: Peer | undefined;
    if (unboundBin) {
      unbound = await startUnbound(unboundBin);
      started.push(unbound);
      peers.push({ name: 'unbound', port: unbound.port, file: authFile });
    } else {
      skipped.unbound = 'unbound is not installed (apt-get install unbound)';
      skipped['portico-forwarder'] = 'needs unbound as the upstream';
    }
    const portico = await startPortico(unbound ? `127.0.0.1:${unbound.port}` : '-');
    started.push(portico);
    peers.push({ name: 'portico', port: portico.port, file: authFile });
    if (unbound) {
      const fill = await dnsperf(portico.port, fwdFile, 10, true); // one pass: every name into the cache
      if (fill.noerror < 0.99) throw new Error(`forwarder warm-up: ${(fill.noerror * 100).toFixed(1)}% NOERROR`);
      peers.push({ name: 'portico-forwarder', port: portico.port, file: fwdFile });
    }
    if (dnsmasqBin) {
      const dnsmasq = await startDnsmasq(dnsmasqBin);
      started.push(dnsmasq);
      peers.push({ name: 'dnsmasq', port: dnsmasq.port, file: authFile });
    } else {
      skipped.dnsmasq = 'dnsmasq is not installed (apt-get install dnsmasq-base)';
    }
    for (const p of peers) await dnsperf(p.port, p.file, 1); // warm-up, not counted
    const samples = new Map<string, Sample[]>(peers.map((p) => [p.name, []]));
    for (let i = 0; i < RUNS; i++) {
      for (const p of peers) samples.get(p.name)!.push(await dnsperf(p.port, p.file, DURATION_S));
    }
    for (const p of peers) results[p.name] = check(p.name, samples.get(p.name)!);
    say(
      `load average after the runs: ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} (${os.cpus().length} CPUs)`,
    );
  } finally {
    for (const p of started.reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }

  const qps = (p: string) => results[p]?.qps as number | undefined;
  const ratios = {
    vsUnbound: ratio(qps('portico'), qps('unbound')),
    vsDnsmasq: ratio(qps('portico'), qps('dnsmasq')),
    forwarderVsUnbound: ratio(qps('portico-forwarder'), qps('unbound')),
    forwarderVsPortico: ratio(qps('portico-forwarder'), qps('portico')),
    latencyVsUnbound: ratio(results.portico?.avgLatencyMs as number | undefined, results.unbound?.avgLatencyMs as number | undefined),
  };
  say(`ratios: ${JSON.stringify(ratios)}`);
  report({
    bench: 'dns',
    runs: RUNS,
    results: { ...results, ...Object.fromEntries(Object.entries(skipped).map(([k, v]) => [k, { skipped: v }])) },
    ratios,
    goals: {
      qpsVsUnbound: { goal: '≥0.5', met: ratios.vsUnbound === null ? null : ratios.vsUnbound >= 0.5 },
      forwarderVsUnbound: {
        goal: '≥0.5 (cache hits in the same range)',
        met: ratios.forwarderVsUnbound === null ? null : ratios.forwarderVsUnbound >= 0.5,
      },
    },
  });
}

/** The Portico side: 1,000 services through the Aggregator into a DNS plane, until SIGTERM. */
async function serve(port: number, upstream: string): Promise<void> {
  const { Aggregator } = await import('../src/aggregator/index.js');
  const { createDnsPlane } = await import('../src/dns/index.js');
  const { createRegistry } = await import('../src/telemetry/metrics.js');
  const { endpoint, service, snapshot } = await import('../test/helpers/snapshot.js');
  const registry = createRegistry({ defaultMetrics: false });
  const agg = new Aggregator({ debounceMs: 0, registry });
  const services: Record<string, ReturnType<typeof service>> = {};
  for (let i = 0; i < NAMES; i++) services[`app${i}`] = service([endpoint(address(i), 8000, { health: 'healthy' })], { name: `app${i}` });
  const published = new Promise<void>((resolve) => {
    const off = agg.subscribe(() => {
      off();
      resolve();
    });
  });
  agg.update('bench', 0, snapshot('bench', { services }));
  await published;
  const plane = createDnsPlane({
    config: {
      listen: `127.0.0.1:${port}`,
      upstreams: upstream === '-' ? [] : [upstream],
      allowRecursionFrom: ['127.0.0.0/8'],
      ttlMs: 5000,
    },
    registry,
  });
  await plane.start(agg.current());
  process.once('SIGTERM', () => {
    void plane.stop(100).then(() => process.exit(0));
  });
}

if (require.main === module && process.argv[2] === '--serve') {
  serve(Number(process.argv[3]), process.argv[4] ?? '-').catch((err) => {
    process.stderr.write(`portico dns bench server: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
