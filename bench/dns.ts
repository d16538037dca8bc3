/**
 * `npm run bench -- dns`: the DNS plane beside unbound and dnsmasq, on one core and on two, in one run on
 * this machine.
 *
 * The same 1,000 names for all (`app<N>.marathon.mesos A`). The client is Debian's dnsperf (UDP, 100
 * queries outstanding, cycling through the names, as DNSPERF_CLIENTS=16 clients: 16 source sockets, so a
 * server that gives each thread its own SO_REUSEPORT socket — unbound's default — gets its queries spread
 * over its threads), RUNS runs of DURATION seconds each after a 1 s warm-up, medians. dnsperf runs with
 * `-v` (one line per answer, to a file) so the p99 latency can be computed; it reports only the average.
 *
 * Variants, each peer in a 1-thread and a 2-thread shape where it has one:
 *   portico, portico-auto           `portico up` (compiled, as an operator runs it) on a config file of the
 *                                   1,000 services: `workers: 1` and `workers: auto` (= 2 here)
 *   portico-forwarder(-auto)        the same two instances answering 1,000 names that only unbound has
 *                                   (`host<N>.fwd.test`), forwarded to unbound once to fill the cache, then
 *                                   measured like the rest: cache hits (each worker has its cache; the
 *                                   warm-up fills both)
 *   portico-plane                   the DNS plane alone in a process (this file with `--serve`, from the
 *                                   sources under tsx, the table built through the Aggregator): what the
 *                                   earlier figures measured; beside `portico`, what the daemon around it costs
 *   unbound, unbound-2              `num-threads: 1` and `2` (`local-data`; so-reuseport, its default)
 *   dnsmasq                         `--addn-hosts`; one process, one thread: dnsmasq has no threads or
 *                                   workers, so it has no 2-thread shape and no scaling figure
 * The `workers` key lands with the multi-process Portico (issue 15). Until this build takes it (asked with
 * `portico validate`), the auto variants are reported as skipped ("workers key not supported by this
 * build") and `portico` runs without the key: that build is one process, the 1-worker shape.
 *
 * Pinning (bench/pin.ts, printed): 1-thread servers alone on CPU 1, dnsperf on CPU 0; 2-thread servers on
 * CPUs 0-1 with dnsperf floating over both (pinned to CPU 0 it leaves CPU 1 idle while CPU 0 is
 * overloaded); this harness on CPU 0. So the 2-thread shape gets CPU 1 and what dnsperf leaves of CPU 0:
 * the scaling ratios (2-thread ÷ 1-thread) are capped well below 2×, alike for every peer (dnsperf's
 * cores are reported per run). (Before issue 15 this bench pinned servers to CPU 0 and dnsperf to CPU 1;
 * the l7 and l4 benches put the client on CPU 0, and now this one does too.) One asymmetry of sharing a
 * CPU with the client: a server that splits queries by a fixed hash (unbound's per-thread SO_REUSEPORT
 * sockets) hands half of them to whichever thread the client is crowding, while one whose workers share a
 * socket (Portico's, as issue 15 designs them) lets the less loaded worker take more. On a machine with a
 * free core per thread that difference vanishes.
 *
 * Per variant: qps, average and p99 latency, lost, CPU per query (user + system of the server's whole
 * process tree, from /proc), the cores the server and dnsperf used, per-CPU busy and its softirq part, the
 * cores other work on the machine took meanwhile (otherCores: noise, warned about when material), what
 * bounded the run (`limit`: server, client, all CPUs, neither — from which CPUs were ≥90% busy), and the
 * processes and threads the server ran as. dnsperf is one thread: near ~275k qps it is the bottleneck, not
 * the server (unbound and dnsmasq reach that here): such runs are labelled `client`, their qps is
 * dnsperf's ceiling (a ratio of Portico to them overstates Portico), and CPU per query is the fair
 * comparison. Ratios: every peer's scaling, Portico against each peer at equal thread counts. All servers
 * run at once and the runs are interleaved (run 1 of every variant, then run 2...), so load from
 * elsewhere on a shared machine falls on every peer alike.
 *
 * Time: about 2.5 minutes at the defaults (BENCH_RUNS=3, BENCH_DURATION=5, 8 variants), ~2 while the auto
 * variants are skipped; BENCH_RUNS=1 BENCH_DURATION=2 well under a minute. BENCH_DNS_PEERS=portico,unbound
 * (comma-separated variant names) runs a subset; the ratios that need a missing one are null.
 *
 * Goal (issue 6): Portico's authoritative qps ≥ 0.5× unbound's; cache hits in the same range.
 * This file is also the portico-plane process: `node --import tsx bench/dns.ts --serve PORT UPSTREAM`.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { median, ratio, report, round, say, which } from './lib.js';
import {
  cpuSeconds,
  freePort,
  porticoWorkersKey,
  PorticoStartError,
  reapedChildrenCpuSeconds,
  startPorticoUp,
  startProcess,
  stopProcess,
  tmpdir,
  waitForPort,
  type Peer,
} from './peers.js';
import {
  busyBetween,
  CPUS,
  cpuTimes,
  describePinning,
  limitOf,
  loadCpus,
  noiseWarning,
  otherCores,
  pinned,
  pinSelf,
  SATURATED,
  serverCpus,
} from './pin.js';

const run = promisify(execFile);
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const WARMUP_S = 1;
const NAMES = Number(process.env.BENCH_DNS_NAMES ?? 1000);
const OUTSTANDING = 100;
const DNSPERF_CLIENTS = 16;
const NO_WORKERS_KEY = 'workers key not supported by this build';

const address = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const fwdAddress = (i: number): string => `172.16.${(i >> 8) & 255}.${i & 255}`;

interface Sample {
  qps: number;
  avgLatencyMs: number;
  p99Ms: number;
  lost: number;
  noerror: number;
  completed: number;
  cpuUsPerQuery?: number;
  /** CPU seconds per second of the run: the server's process tree, and dnsperf. */
  cores?: number;
  clientCores?: number;
  /** Cores busy with work that is none of the bench's (other processes on a shared machine): noise. */
  otherCores?: number;
  /** Each CPU's busy fraction (every process on the machine, other work included), and its softirq part. */
  busy?: number[];
  softirq?: number[];
}

function summarise(samples: Sample[]): Record<string, number | number[]> {
  const out: Record<string, number | number[]> = {
    qps: Math.round(median(samples.map((s) => s.qps))),
    avgLatencyMs: round(median(samples.map((s) => s.avgLatencyMs)), 3),
    p99Ms: round(median(samples.map((s) => s.p99Ms)), 3),
    lostPct: round(median(samples.map((s) => s.lost)), 3),
  };
  for (const k of ['cpuUsPerQuery', 'cores', 'clientCores', 'otherCores'] as const) {
    const xs = samples.map((s) => s[k]).filter((x): x is number => x !== undefined);
    if (xs.length) out[k] = round(median(xs), 2);
  }
  for (const [k, name] of [
    ['busy', 'cpuBusy'],
    ['softirq', 'cpuSoftirq'],
  ] as const) {
    const xs = samples.map((s) => s[k]).filter((x): x is number[] => x !== undefined);
    if (xs.length) out[name] = (xs[0] as number[]).map((_, i) => round(median(xs.map((b) => b[i] as number)), 2));
  }
  return out;
}

/** dnsperf's statistics, and with `-v` output the p99 of the per-answer latencies. */
function parseDnsperf(out: string): Sample {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const completed = num(/Queries completed:\s+(\d+)/);
  const noerror = Number(/NOERROR (\d+)/.exec(out)?.[1] ?? 0);
  // `-v` lines: "> NOERROR app5.marathon.mesos A 0.000123" (the last field: seconds).
  const lat: number[] = [];
  for (let i = out.indexOf('\n> '); i >= 0; i = out.indexOf('\n> ', i + 1)) {
    const end = out.indexOf('\n', i + 1);
    const line = out.slice(i + 1, end < 0 ? undefined : end);
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) lat.push(v);
  }
  const sorted = Float64Array.from(lat).sort();
  const p99 = sorted.length ? (sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)] as number) * 1000 : NaN;
  return {
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    p99Ms: p99,
    lost: num(/Queries lost:\s+\d+ \(([\d.]+)%\)/),
    noerror: completed > 0 ? noerror / completed : 0,
    completed,
  };
}

let scratch = '';

/** One dnsperf run on `cpus`; `once`: a single pass through the names (cache fill), no -v. */
async function dnsperf(port: number, file: string, seconds: number, cpus: string | undefined, once = false): Promise<Sample> {
  const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-c', String(DNSPERF_CLIENTS), '-q', String(OUTSTANDING), '-t', '2'];
  if (once) args.push('-n', '1');
  else args.push('-l', String(seconds), '-v');
  const [cmd, argv] = pinned(cpus, 'dnsperf', args);
  // To a file: a pipe this process read would make the harness part of the measured client's cost.
  const outFile = path.join(scratch, 'dnsperf.out');
  const fd = openSync(outFile, 'w');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', fd, 'ignore'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('error', reject);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  closeSync(fd);
  const stdout = await readFile(outFile, 'utf8');
  await rm(outFile, { force: true });
  const s = parseDnsperf(stdout);
  if (code !== 0 || !Number.isFinite(s.qps)) throw new Error(`dnsperf exited ${code}; output not understood:\n${stdout.slice(-2000)}`);
  return s;
}

/** RUNS samples of one variant; asserts the answers were NOERROR. */
function check(name: string, samples: Sample[]): Record<string, number | number[]> {
  const bad = samples.find((x) => x.noerror < 0.99);
  if (bad) throw new Error(`${name}: only ${(bad.noerror * 100).toFixed(1)}% NOERROR answers`);
  const sum = summarise(samples);
  say(`${name.padEnd(22)} ${JSON.stringify(sum)}  runs: ${samples.map((x) => Math.round(x.qps)).join(', ')} qps`);
  return sum;
}

async function startUnbound(bin: string, threads: number): Promise<Peer> {
  const name = threads === 1 ? 'unbound' : `unbound-${threads}`;
  const dir = await tmpdir(name);
  const port = await freePort();
  const lines = [
    'server:',
    '  interface: 127.0.0.1',
    `  port: ${port}`,
    `  num-threads: ${threads}`,
    '  so-reuseport: yes',
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
  const proc = startProcess(bin, ['-d', '-c', conf], { cpus: serverCpus(threads) });
  await waitForPort(port);
  return {
    name,
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
  const proc = startProcess(
    bin,
    [
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
    ],
    { cpus: serverCpus(1) },
  );
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

/** The DNS plane alone in a process of its own (this file with --serve, from the sources). */
async function startPorticoPlane(upstream: string): Promise<Peer> {
  const port = await freePort();
  const proc = startProcess(process.execPath, ['--import', 'tsx', __filename, '--serve', String(port), upstream], {
    cwd: path.join(__dirname, '..'),
    cpus: serverCpus(1),
  });
  await waitForPort(port, '127.0.0.1', 30_000); // readiness: the plane binds UDP, then TCP
  return { name: 'portico-plane', port, proc, stop: () => stopProcess(proc) };
}

/** `portico up` (compiled) serving the 1,000 names from its config file, forwarding the rest to `upstream`. */
async function startPorticoDns(name: string, workers: 'auto' | 1 | undefined, threads: number, upstream: string): Promise<Peer> {
  const port = await freePort();
  const services = Array.from({ length: NAMES }, (_, i) => `  app${i}: { endpoints: [ { address: ${address(i)}, port: 8000 } ] }`);
  const config = [
    'api: { listen: 127.0.0.1:0 }',
    'dns:',
    `  listen: 127.0.0.1:${port}`,
    `  upstreams: [${upstream === '-' ? '' : `"${upstream}"`}]`,
    'services:',
    ...services,
    '',
  ].join('\n');
  return startPorticoUp({ name, config, readyPort: port, workers, env: { PORTICO_LOG_LEVEL: 'warn' }, cpus: serverCpus(threads) });
}

/** A measured target: a server, the names it is asked, and its shape. */
interface Target {
  name: string;
  threads: number;
  shape: string;
  peer: Peer;
  file: string;
}

export async function main(): Promise<void> {
  const dnsperfBin = which('dnsperf');
  // Both live in /usr/sbin, which a non-root PATH may lack.
  const unboundBin = which('unbound') ?? which('/usr/sbin/unbound');
  const dnsmasqBin = which('dnsmasq') ?? which('/usr/sbin/dnsmasq');
  const skipped: Record<string, Record<string, unknown>> = {};
  const results: Record<string, Record<string, unknown>> = {};
  const all = [
    'portico',
    'portico-auto',
    'portico-forwarder',
    'portico-forwarder-auto',
    'portico-plane',
    'unbound',
    'unbound-2',
    'dnsmasq',
  ];
  const onlyEnv = process.env.BENCH_DNS_PEERS;
  const wanted = new Set(onlyEnv ? onlyEnv.split(',').map((s) => s.trim()) : all);
  const want = (n: string) => wanted.has(n);
  if (!dnsperfBin) {
    const why = 'dnsperf is not installed (apt-get install dnsperf)';
    for (const p of all.filter(want)) skipped[p] = { skipped: why };
    say(why);
    report({ bench: 'dns', runs: RUNS, results: skipped, ratios: { vsUnbound: null, vsDnsmasq: null, forwarderVsUnbound: null } });
    return;
  }
  say('building dist/ (portico up runs compiled, as npm start runs it)');
  await run(process.execPath, [
    path.join(__dirname, '..', 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    path.join(__dirname, '..', 'tsconfig.build.json'),
  ]);
  pinSelf();
  const workersKey = await porticoWorkersKey();

  const dir = await tmpdir('dnsperf');
  scratch = dir;
  const authFile = path.join(dir, 'auth.txt');
  const fwdFile = path.join(dir, 'fwd.txt');
  await writeFile(authFile, Array.from({ length: NAMES }, (_, i) => `app${i}.marathon.mesos A`).join('\n') + '\n');
  await writeFile(fwdFile, Array.from({ length: NAMES }, (_, i) => `host${i}.fwd.test A`).join('\n') + '\n');

  // Every server up at once (idle ones cost nothing), then the runs interleaved — run 1 of each variant,
  // run 2 of each... — so load from elsewhere on the machine falls on all peers alike.
  const targets: Target[] = [];
  const started: Peer[] = [];
  const add = (t: Target) => {
    if (want(t.name)) targets.push(t);
  };
  try {
    let upstream = '-';
    if (unboundBin) {
      // The 1-thread unbound is also the forwarder's upstream (only cache hits are measured: it is idle then).
      const unbound = await startUnbound(unboundBin, 1);
      started.push(unbound);
      upstream = `127.0.0.1:${unbound.port}`;
      add({ name: 'unbound', threads: 1, shape: 'unbound num-threads: 1', peer: unbound, file: authFile });
      if (want('unbound-2')) {
        const u2 = await startUnbound(unboundBin, 2);
        started.push(u2);
        add({
          name: 'unbound-2',
          threads: 2,
          shape: 'unbound num-threads: 2 (so-reuseport: a socket per thread)',
          peer: u2,
          file: authFile,
        });
      }
    } else {
      for (const n of ['unbound', 'unbound-2']) if (want(n)) skipped[n] = { skipped: 'unbound is not installed (apt-get install unbound)' };
      for (const n of ['portico-forwarder', 'portico-forwarder-auto'])
        if (want(n)) skipped[n] = { skipped: 'needs unbound as the upstream' };
    }
    if (want('portico-plane')) {
      const plane = await startPorticoPlane(upstream);
      started.push(plane);
      add({
        name: 'portico-plane',
        threads: 1,
        shape: 'the DNS plane alone in one process (from the sources, tsx)',
        peer: plane,
        file: authFile,
      });
    }
    for (const workers of [1, 'auto'] as const) {
      const suffix = workers === 1 ? '' : '-auto';
      const names = [`portico${suffix}`, `portico-forwarder${suffix}`].filter(want);
      if (!names.length) continue;
      if (workers === 'auto' && !workersKey.supported) {
        for (const n of names) skipped[n] = { skipped: NO_WORKERS_KEY, detail: workersKey.detail };
        continue;
      }
      const threads = workers === 1 ? 1 : 2;
      const key = workersKey.supported ? workers : undefined;
      const shape =
        workers === 'auto'
          ? `portico up, workers: auto (${CPUS} cores)`
          : key === undefined
            ? 'portico up without the workers key: this build is one process, the 1-worker shape'
            : 'portico up, workers: 1';
      let peer: Peer;
      try {
        peer = await startPorticoDns(`portico${suffix}`, key, threads, upstream);
      } catch (err) {
        if (!(key !== undefined && err instanceof PorticoStartError)) throw err;
        for (const n of names)
          skipped[n] = {
            skipped: /workers/.test(err.message) ? NO_WORKERS_KEY : 'portico up failed with the workers key',
            detail: err.message,
          };
        continue;
      }
      started.push(peer);
      add({ name: `portico${suffix}`, threads, shape, peer, file: authFile });
      if (upstream !== '-' && want(`portico-forwarder${suffix}`)) {
        const fill = await dnsperf(peer.port, fwdFile, 10, loadCpus(threads), true); // one pass: every name into the cache
        if (fill.noerror < 0.99) throw new Error(`forwarder warm-up: ${(fill.noerror * 100).toFixed(1)}% NOERROR`);
        add({ name: `portico-forwarder${suffix}`, threads, shape: `${shape}; forwarder cache hits`, peer, file: fwdFile });
      }
    }
    if (want('dnsmasq')) {
      if (dnsmasqBin) {
        const dnsmasq = await startDnsmasq(dnsmasqBin);
        started.push(dnsmasq);
        add({
          name: 'dnsmasq',
          threads: 1,
          shape: 'dnsmasq: one process, one thread (it has no threads or workers: no 2-thread shape)',
          peer: dnsmasq,
          file: authFile,
        });
      } else {
        skipped.dnsmasq = { skipped: 'dnsmasq is not installed (apt-get install dnsmasq-base)' };
      }
    }
    const estimateS = targets.length * (WARMUP_S + RUNS * DURATION_S);
    say(
      `dns bench: ${RUNS} runs × ${DURATION_S}s, ${NAMES} names, dnsperf UDP ${OUTSTANDING} outstanding over ${DNSPERF_CLIENTS} sockets; ` +
        `variants: ${targets.map((t) => t.name).join(', ')}; about ${Math.round(estimateS / 6) / 10} minutes of runs; load average ${os.loadavg()[0]?.toFixed(2)}`,
    );
    say(describePinning());
    say(`workers key: ${workersKey.supported ? 'supported by this build' : `refused by this build (${workersKey.detail.split('\n')[0]})`}`);
    say('dnsmasq: one process, one thread (no threads or workers option): measured on one core only');
    for (const [name, s] of Object.entries(skipped)) say(`${name.padEnd(22)} skipped: ${String(s.skipped)}`);

    for (const t of targets) await dnsperf(t.peer.port, t.file, WARMUP_S, loadCpus(t.threads)); // warm-up, not counted
    const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
    const seen = new Map<string, { processes: number; threads: number }>();
    for (let i = 0; i < RUNS; i++) {
      for (const t of targets) {
        const pid = t.peer.proc?.pid;
        const t0 = cpuTimes();
        const c0 = cpuSeconds(pid);
        const l0 = reapedChildrenCpuSeconds();
        const w0 = performance.now();
        const sample = await dnsperf(t.peer.port, t.file, DURATION_S, loadCpus(t.threads));
        const wall = (performance.now() - w0) / 1000;
        const l1 = reapedChildrenCpuSeconds();
        const c1 = cpuSeconds(pid);
        const busy = busyBetween(t0, cpuTimes());
        if (c0 && c1 && sample.completed > 0) {
          sample.cpuUsPerQuery = round(((c1.user + c1.sys - c0.user - c0.sys) * 1e6) / sample.completed, 2);
          sample.cores = round((c1.user + c1.sys - c0.user - c0.sys) / wall, 2);
          seen.set(t.name, { processes: c1.processes, threads: c1.threads });
        }
        if (l0 !== undefined && l1 !== undefined) sample.clientCores = round((l1 - l0) / wall, 2);
        if (busy) Object.assign(sample, busy);
        const other = otherCores(busy, sample.cores, sample.clientCores);
        if (other !== undefined) sample.otherCores = other;
        samples.get(t.name)!.push(sample);
      }
    }
    for (const t of targets) {
      const s = seen.get(t.name);
      const sum = check(t.name, samples.get(t.name)!);
      const limit = limitOf(t.threads, sum.cpuBusy as number[] | undefined, sum.clientCores as number | undefined);
      results[t.name] = {
        shape: t.shape,
        threads: t.threads,
        cpus: serverCpus(t.threads) ?? 'any',
        clientCpus: loadCpus(t.threads) ?? 'any',
        ...(s ? { processes: s.processes, osThreads: s.threads } : {}),
        ...sum,
        ...(limit ? { limit } : {}),
      };
    }
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

  const get = (p: string, f: string) => results[p]?.[f] as number | undefined;
  const qps = (a: string, b: string) => ratio(get(a, 'qps'), get(b, 'qps'));
  const ratios = {
    vsUnbound: qps('portico', 'unbound'),
    vsDnsmasq: qps('portico', 'dnsmasq'),
    forwarderVsUnbound: qps('portico-forwarder', 'unbound'),
    forwarderVsPortico: qps('portico-forwarder', 'portico'),
    latencyVsUnbound: ratio(get('portico', 'avgLatencyMs'), get('unbound', 'avgLatencyMs')),
    p99VsUnbound: ratio(get('portico', 'p99Ms'), get('unbound', 'p99Ms')),
    // The daemon around the plane: portico up against the plane alone, one core each.
    upVsPlane: qps('portico', 'portico-plane'),
    cpuPerQueryUnboundOverPortico: ratio(get('unbound', 'cpuUsPerQuery'), get('portico', 'cpuUsPerQuery')),
    // Scaling across cores: each peer's 2-thread shape over its 1-thread one (capped below 2× on this machine,
    // alike for all: the 2-thread shape gets CPU 1 and what dnsperf leaves of CPU 0). dnsmasq has none.
    scalingPortico: qps('portico-auto', 'portico'),
    scalingForwarder: qps('portico-forwarder-auto', 'portico-forwarder'),
    scalingUnbound: qps('unbound-2', 'unbound'),
    p99ScalingPortico: ratio(get('portico-auto', 'p99Ms'), get('portico', 'p99Ms')),
    p99ScalingUnbound: ratio(get('unbound-2', 'p99Ms'), get('unbound', 'p99Ms')),
    // Portico against each peer with two threads / workers (the 1-thread ones are above).
    autoVsUnbound2: qps('portico-auto', 'unbound-2'),
    forwarderAutoVsUnbound2: qps('portico-forwarder-auto', 'unbound-2'),
    autoP99VsUnbound2: ratio(get('portico-auto', 'p99Ms'), get('unbound-2', 'p99Ms')),
    cpuPerQueryUnbound2OverPorticoAuto: ratio(get('unbound-2', 'cpuUsPerQuery'), get('portico-auto', 'cpuUsPerQuery')),
  };
  // A scaling figure (or a ratio to a peer) means something only when the runs were bounded by the server.
  const caveat = (one: string) => {
    const limit = results[one]?.limit;
    return limit && limit !== 'server'
      ? ` [its 1-thread run was ${String(limit)}-bound (CPU ${serverCpus(1)} under ${SATURATED * 100}% busy): not a measure of its scaling]`
      : '';
  };
  const scaled = (two: string, one: string, r: number | null) =>
    r !== null ? `${one} ${r}×${caveat(one)}` : `${one} –${skipped[two] ? ` (${two}: ${String(skipped[two].skipped)})` : ''}`;
  say(
    `scaling, 2-thread ÷ 1-thread qps: ${[
      scaled('portico-auto', 'portico', ratios.scalingPortico),
      scaled('portico-forwarder-auto', 'portico-forwarder', ratios.scalingForwarder),
      scaled('unbound-2', 'unbound', ratios.scalingUnbound),
    ].join(', ')}; dnsmasq: one process, no 2-thread shape`,
  );
  const clientBound = Object.entries(results)
    .filter(([, r]) => r.limit === 'client' && r.threads === 1)
    .map(([n]) => n);
  if (clientBound.length)
    say(
      `client-bound (dnsperf's CPU saturated, the server's not): ${clientBound.join(', ')} — their qps is dnsperf's ceiling on this machine, ` +
        'so a ratio of Portico to them overstates Portico and their scaling is not measured; CPU per query compares them fairly',
    );
  const noise = noiseWarning(Object.values(results).map((r) => (r.otherCores as number | undefined) ?? 0));
  if (noise) say(noise);
  say(`ratios: ${JSON.stringify(ratios)}`);
  report({
    bench: 'dns',
    runs: RUNS,
    setup: { pinning: describePinning(), workersKey: workersKey.supported, dnsperfClients: DNSPERF_CLIENTS, outstanding: OUTSTANDING },
    results: { ...results, ...skipped },
    ratios,
    goals: {
      qpsVsUnbound: { goal: '≥0.5', on: 'portico', met: ratios.vsUnbound === null ? null : ratios.vsUnbound >= 0.5 },
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
