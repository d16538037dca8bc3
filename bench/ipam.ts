/**
 * `npm run bench -- ipam`: container address allocation through the real plugin binary, beside Debian's
 * `host-local` (/usr/lib/cni) on the same machine, with the same `ranges` config (portico-cni takes
 * host-local's format).
 *
 * Per peer and run (medians over RUNS runs):
 *   - ADD latency, one plugin process at a time (SEQ ADDs): median and p99 of the process's wall time;
 *   - allocations/s with 4 plugin processes running ADDs back to back (CONC ADDs in all);
 *   - start-up: the same binary's VERSION command (no allocation, no I/O), median;
 *   - ADD excluding start-up: ADD wall time minus the VERSION median; for Portico also the daemon's own
 *     service time, measured by speaking the plugin's socket protocol directly (no process at all).
 *   - duplicates: every address handed out in the run, checked for uniqueness (goal: 0, always).
 * The daemon (embedded store, fsync'd) runs in its own process, as it would in production.
 * The plugin runs compiled JavaScript: dist/ when built, else a transpile of its two source files into
 * a temp dir (esbuild, as tsx uses it) — never tsx at run time, which would be measured as start-up.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { buildPlugin } from '../test/overlay/helpers.js';
import { median, percentile, ratio, report, round, say } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SEQ = Number(process.env.BENCH_IPAM_SEQ ?? 100);
const CONC = Number(process.env.BENCH_IPAM_CONC ?? 200);
const WORKERS = 4;
const HOST_LOCAL = '/usr/lib/cni/host-local';
const ROOT = path.join(__dirname, '..');

interface Exec { code: number | null; out: string; ms: number; /** portico-cni's own time after start-up (PORTICO_CNI_TIMING). */ selfMs?: number }

function exec(bin: string, env: Record<string, string>, stdin: string): Promise<Exec> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORTICO_CNI_TIMING: '1', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /portico-cni: timing \w+ ([\d.]+)/.exec(err);
      resolve({ code, out, ms: performance.now() - t0, ...(m ? { selfMs: Number(m[1]) } : {}) });
    });
    child.stdin.on('error', () => {}); // a plugin may exit before reading all of it
    child.stdin.end(stdin);
  });
}

/** A runnable portico-cni on compiled JS: the repo's when dist/ is built, else one assembled in `tmp`. */
function pluginBinary(tmp: string): string {
  if (fs.existsSync(path.join(ROOT, 'dist', 'overlay', 'cni', 'main.js'))) return path.join(ROOT, 'bin', 'portico-cni');
  return buildPlugin(tmp);
}

interface PeerRun {
  addMedianMs: number;
  addP99Ms: number;
  allocsPerSec: number;
  startupMs: number;
  addNetMedianMs: number;
  addNetP99Ms: number;
  duplicates: number;
  failures: number;
  /** portico-cni only: the ADD's own time inside the plugin process, after start-up. */
  selfMedianMs?: number;
  selfP99Ms?: number;
}

interface Peer {
  name: string;
  bin: string;
  config(run: number): Record<string, unknown>;
  /** Reset state between runs. */
  reset(run: number): Promise<void>;
}

async function measure(peer: Peer, run: number): Promise<PeerRun> {
  await peer.reset(run);
  const config = peer.config(run);
  const stdin = JSON.stringify(config);
  const env = (cmd: string, id: string): Record<string, string> => ({
    CNI_COMMAND: cmd, CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: '/var/run/netns/bench', CNI_PATH: path.dirname(peer.bin),
  });
  const addrs: string[] = [];
  let failures = 0;
  const record = (r: Exec) => {
    if (r.code !== 0) {
      failures++;
      return;
    }
    const ips = (JSON.parse(r.out) as { ips: Array<{ address: string }> }).ips;
    for (const ip of ips) addrs.push(ip.address);
  };
  // Start-up: VERSION.
  const ver: number[] = [];
  for (let i = 0; i < 30; i++) ver.push((await exec(peer.bin, { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}')).ms);
  const startupMs = median(ver);
  // Sequential ADDs.
  const lat: number[] = [];
  const self: number[] = [];
  for (let i = 0; i < SEQ; i++) {
    const r = await exec(peer.bin, env('ADD', `seq-${run}-${i}`), stdin);
    record(r);
    lat.push(r.ms);
    if (r.selfMs !== undefined) self.push(r.selfMs);
  }
  // 4 concurrent plugin processes.
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: WORKERS }, async () => {
    while (next < CONC) {
      const i = next++;
      record(await exec(peer.bin, env('ADD', `conc-${run}-${i}`), stdin));
    }
  }));
  const allocsPerSec = CONC / ((performance.now() - t0) / 1000);
  const p99 = percentile(lat, 99);
  const med = median(lat);
  return {
    addMedianMs: round(med), addP99Ms: round(p99), allocsPerSec: round(allocsPerSec, 1), startupMs: round(startupMs),
    addNetMedianMs: round(med - startupMs), addNetP99Ms: round(p99 - startupMs),
    duplicates: addrs.length - new Set(addrs).size, failures,
    ...(self.length > 0 ? { selfMedianMs: round(median(self), 3), selfP99Ms: round(percentile(self, 99), 3) } : {}),
  };
}

/** The daemon's own ADD service time: the plugin's protocol spoken directly, no process. */
async function serviceTimes(socket: string, config: Record<string, unknown>, n: number, run: number): Promise<{ median: number; p99: number; addrs: string[] }> {
  const lat: number[] = [];
  const addrs: string[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.createConnection(socket);
      let buf = '';
      c.on('connect', () => c.end(`${JSON.stringify({ command: 'ADD', containerId: `svc-${run}-${i}`, ifName: 'eth0', netns: '/x', config })}\n`));
      c.on('data', (d: Buffer) => { buf += d.toString(); });
      c.on('close', () => resolve(buf));
      c.on('error', reject);
    });
    lat.push(performance.now() - t0);
    const r = JSON.parse(reply) as { ok: boolean; result?: { ips: Array<{ address: string }> } };
    for (const ip of r.result?.ips ?? []) addrs.push(ip.address);
  }
  return { median: median(lat), p99: percentile(lat, 99), addrs };
}

export async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'portico-bench-ipam-'));
  const socket = path.join(tmp, 'ipam.sock');
  // The daemon in a process of its own, as in production: the bench's event loop (spawning plugins,
  // reading their output) must not delay its answers.
  const daemon = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test', 'overlay', 'fixtures', 'daemon.ts'), tmp, socket, 'bench'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    daemon.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    daemon.on('exit', (code) => reject(new Error(`the IPAM daemon exited (${code})`)));
  });
  try {
    const bin = pluginBinary(tmp);
    const ranges = (run: number) => [[{ subnet: `10.${100 + run}.0.0/16` }]];
    const peers: Peer[] = [{
      name: 'portico',
      bin,
      config: (run) => ({ cniVersion: '1.0.0', name: `bench${run}`, type: 'bridge', ipam: { type: 'portico-cni', socket, ranges: ranges(run) } }),
      reset: async () => {},
    }];
    let hostLocalSkip: string | undefined;
    if (fs.existsSync(HOST_LOCAL)) {
      const dataDir = path.join(tmp, 'host-local');
      peers.push({
        name: 'host-local',
        bin: HOST_LOCAL,
        config: (run) => ({ cniVersion: '1.0.0', name: `bench${run}`, type: 'bridge', ipam: { type: 'host-local', dataDir, ranges: ranges(run) } }),
        reset: async () => { fs.rmSync(dataDir, { recursive: true, force: true }); },
      });
    } else {
      hostLocalSkip = `${HOST_LOCAL} not installed (Debian: containernetworking-plugins)`;
    }
    say(`ipam: ${RUNS} runs; ${SEQ} sequential ADDs, ${CONC} ADDs by ${WORKERS} concurrent plugin processes; plugin ${bin}`);
    const runs: Record<string, PeerRun[]> = {};
    const svc: Array<{ median: number; p99: number }> = [];
    let svcDup = 0;
    for (let run = 0; run < RUNS; run++) {
      for (const p of peers) {
        const r = await measure(p, run);
        (runs[p.name] ??= []).push(r);
        say(`  run ${run + 1} ${p.name.padEnd(10)} ADD median ${r.addMedianMs} ms p99 ${r.addP99Ms} ms | ${r.allocsPerSec} allocs/s x${WORKERS} | start-up ${r.startupMs} ms | ADD-start-up p99 ${r.addNetP99Ms} ms${r.selfP99Ms !== undefined ? ` (in-process p99 ${r.selfP99Ms} ms)` : ''} | dups ${r.duplicates} fails ${r.failures}`);
      }
      const s = await serviceTimes(socket, { cniVersion: '1.0.0', name: `svc${run}`, type: 'bridge', ipam: { type: 'portico-cni', ranges: [[{ subnet: `10.${200 + run}.0.0/16` }]] } }, SEQ, run);
      svcDup += s.addrs.length - new Set(s.addrs).size;
      svc.push(s);
      say(`  run ${run + 1} portico daemon service time (socket, no process): median ${round(s.median, 3)} ms p99 ${round(s.p99, 3)} ms`);
    }
    const agg = (rs: PeerRun[]): Record<string, number> => {
      const keys = Object.keys(rs[0]!) as Array<keyof PeerRun>;
      const o: Record<string, number> = {};
      for (const k of keys) o[k] = k === 'duplicates' || k === 'failures' ? rs.reduce((a, r) => a + (r[k] ?? 0), 0) : round(median(rs.map((r) => r[k] as number)), 3);
      return o;
    };
    const portico: Record<string, number> = { ...agg(runs.portico!), serviceMedianMs: round(median(svc.map((s) => s.median)), 3), serviceP99Ms: round(median(svc.map((s) => s.p99)), 3), serviceDuplicates: svcDup };
    const hl = runs['host-local'] ? agg(runs['host-local']) : undefined;
    say(`portico    ADD median ${portico.addMedianMs} ms p99 ${portico.addP99Ms} ms, ${portico.allocsPerSec} allocs/s, start-up ${portico.startupMs} ms, ADD after start-up p99 ${portico.selfP99Ms} ms, daemon p99 ${portico.serviceP99Ms} ms`);
    if (hl) say(`host-local ADD median ${hl.addMedianMs} ms p99 ${hl.addP99Ms} ms, ${hl.allocsPerSec} allocs/s, start-up ${hl.startupMs} ms`);
    const dups = (portico.duplicates ?? 0) + svcDup + (hl?.duplicates ?? 0);
    report({
      bench: 'ipam',
      runs: RUNS,
      results: {
        portico,
        'host-local': hl ?? { skipped: hostLocalSkip ?? 'unknown' },
      },
      ratios: {
        addP99VsHostLocal: ratio(portico.addP99Ms, hl?.addP99Ms),
        addNetP99VsHostLocal: ratio(portico.addNetP99Ms, hl?.addNetP99Ms),
        addSelfP99VsHostLocalNet: ratio(portico.selfP99Ms, hl?.addNetP99Ms),
        allocsPerSecVsHostLocal: ratio(portico.allocsPerSec, hl?.allocsPerSec),
        startupVsHostLocal: ratio(portico.startupMs, hl?.startupMs),
      },
      goals: {
        duplicates: { goal: '0', met: dups === 0 },
        // Portico's side: the plugin's own ADD time after node's start-up (measured in the process);
        // host-local's: its ADD wall time minus its VERSION median (Go starts in ~4 ms, with little jitter).
        addP99ExcludingStartupVsHostLocal: { goal: '≤1 (portico-cni ADD p99 after start-up ≤ host-local ADD p99 minus start-up)', met: hl ? portico.selfP99Ms! <= hl.addNetP99Ms! : null },
      },
    });
  } finally {
    daemon.kill();
    await new Promise((r) => (daemon.exitCode !== null ? r(null) : daemon.once('exit', r)));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then(() => process.exit(0), (e) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
