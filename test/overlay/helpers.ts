/**
 * Helpers for the overlay tests: a store + overlay daemon in this process (or in a child process, for
 * kill -9), the plugin and the real CNI plugins run as processes, network namespaces that are removed
 * in teardown.
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EmbeddedStore } from '../../src/store/embedded.js';
import { openOverlay, type Overlay, type OverlayOptions } from '../../src/overlay/index.js';

export const ROOT = path.join(__dirname, '..', '..');
export const SOURCE_PLUGIN = path.join(ROOT, 'bin', 'portico-cni');

/**
 * bin/portico-cni over a fresh build of the plugin's sources, without tsx at run time (tests and the
 * benchmark start hundreds of plugin processes): src/overlay/cni/main.ts bundled by esbuild (as tsx
 * uses it) into one self-contained CommonJS file, where `npm run build` puts the plugin (dist/overlay/
 * cni/main.js), beside a copy of bin/portico-cni, in a temp dir. The same sources the tests import,
 * never a stale dist/.
 */
export function buildPlugin(dir: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const esbuild = require('esbuild') as typeof import('esbuild');
  const outDir = path.join(dir, 'root', 'dist', 'overlay', 'cni');
  fs.mkdirSync(outDir, { recursive: true });
  esbuild.buildSync({
    entryPoints: [path.join(ROOT, 'src', 'overlay', 'cni', 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: path.join(outDir, 'main.js'),
    logLevel: 'silent',
  });
  const binDir = path.join(dir, 'root', 'bin');
  fs.mkdirSync(binDir, { recursive: true });
  const bin = path.join(binDir, 'portico-cni');
  fs.copyFileSync(SOURCE_PLUGIN, bin);
  fs.chmodSync(bin, 0o755);
  return bin;
}

/**
 * The native relay (native/portico-cni.c) built by scripts/build-native.js into `out`, falling back to
 * the Node plugin `fallback`. The tests need a C compiler (.ci/run installs gcc): without one this
 * throws, saying so.
 */
export function buildNative(out: string, fallback: string): string {
  fs.rmSync(out, { force: true });
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build-native.js'), out, fallback], { encoding: 'utf8' });
  if (r.status !== 0 || !fs.existsSync(out)) {
    throw new Error(
      `the native portico-cni relay could not be built (the overlay tests need a C compiler: apt-get install gcc libc6-dev): ${(r.stderr || r.stdout || String(r.error ?? '')).trim()}`,
    );
  }
  return out;
}

const pluginDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portico-cni-build-'));
process.on('exit', () => fs.rmSync(pluginDir, { recursive: true, force: true }));
/** The Node plugin: bin/portico-cni over a fresh bundle of the sources. */
export const NODE_PLUGIN = buildPlugin(pluginDir);
/** The native relay, falling back to NODE_PLUGIN. */
export const NATIVE_PLUGIN = buildNative(path.join(pluginDir, 'native', 'portico-cni'), NODE_PLUGIN);
/** What the suite runs as `portico-cni` (what operators install after `npm run build`): the native relay. */
export const PLUGIN = NATIVE_PLUGIN;
export const SYSTEM_CNI = '/usr/lib/cni';

export function tmpdir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `portico-${tag}-`));
}

/** A CNI bin dir holding portico-cni (a symlink) and the system plugins we use. */
export function cniBinDir(dir: string): string {
  const bin = path.join(dir, 'cni-bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.symlinkSync(PLUGIN, path.join(bin, 'portico-cni'));
  for (const p of ['bridge', 'host-local', 'loopback']) {
    if (fs.existsSync(path.join(SYSTEM_CNI, p))) fs.symlinkSync(path.join(SYSTEM_CNI, p), path.join(bin, p));
  }
  return bin;
}

export interface Daemon {
  store: EmbeddedStore;
  overlay: Overlay;
  socket: string;
  close(): Promise<void>;
}

export async function startDaemon(dir: string, opts: Partial<OverlayOptions> = {}): Promise<Daemon> {
  const store = await EmbeddedStore.open(path.join(dir, 'store'));
  const socket = opts.socketPath ?? path.join(dir, 'ipam.sock');
  const overlay = await openOverlay({ store, agentId: 'agent-a', agentIp: '192.0.2.1', ...opts, socketPath: socket });
  return {
    store,
    overlay,
    socket: socket as string,
    async close() {
      await overlay.close();
      await store.close();
    },
  };
}

export interface CniRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: any;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface CniCall {
  /** CNI_COMMAND (undefined: not set at all). */
  command: string | undefined;
  /** Written to stdin: a string or Buffer as it is, anything else as JSON. */
  config: unknown;
  containerId?: string;
  ifName?: string;
  netns?: string;
  args?: string;
  cniPath?: string;
  /** Executable to run (default: PLUGIN, the native relay). */
  plugin?: string;
  /** Wrap in `ip netns exec NS` (the main plugin of an "agent" namespace). */
  inNetns?: string;
  env?: Record<string, string>;
}

export function cniSpawn(c: CniCall): ChildProcess {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...(c.command !== undefined ? { CNI_COMMAND: c.command } : {}),
    ...(c.containerId !== undefined ? { CNI_CONTAINERID: c.containerId } : {}),
    ...(c.ifName !== undefined ? { CNI_IFNAME: c.ifName } : {}),
    ...(c.netns !== undefined ? { CNI_NETNS: c.netns } : {}),
    ...(c.args !== undefined ? { CNI_ARGS: c.args } : {}),
    ...(c.cniPath !== undefined ? { CNI_PATH: c.cniPath } : {}),
    ...(c.env ?? {}),
  };
  const exe = c.plugin ?? PLUGIN;
  const [cmd, argv] = c.inNetns ? ['ip', ['netns', 'exec', c.inNetns, exe]] : [exe, []];
  const child = spawn(cmd, argv as string[], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin!.on('error', () => {}); // a plugin may exit before it reads all of it
  child.stdin!.end(typeof c.config === 'string' || Buffer.isBuffer(c.config) ? c.config : JSON.stringify(c.config));
  return child;
}

export function cni(c: CniCall): Promise<CniRun> {
  const started = performance.now();
  const child = cniSpawn(c);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      let out: unknown;
      try {
        out = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        out = undefined;
      }
      resolve({ code, signal, out, stdout, stderr, ms: performance.now() - started });
    });
  });
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function shAsync(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, out, errOut) => (err ? reject(Object.assign(err, { stderr: errOut })) : resolve(out))),
  );
}

let nsCounter = 0;
/** A fresh network namespace with a unique, short name; remember to `delNetns`. */
export function addNetns(tag: string): string {
  const name = `pt${process.pid % 100000}${tag}${nsCounter++}`;
  sh('ip', ['netns', 'add', name]);
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

export function delNetns(name: string): void {
  try {
    sh('ip', ['netns', 'del', name]);
  } catch {
    // already gone
  }
}

export function canUseNetns(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  try {
    const ns = addNetns('probe');
    delNetns(ns);
  } catch (e) {
    return `ip netns does not work here: ${(e as Error).message}`;
  }
  if (!fs.existsSync(path.join(SYSTEM_CNI, 'bridge'))) return `no ${SYSTEM_CNI}/bridge (containernetworking-plugins)`;
  return false;
}

export function netnsPath(name: string): string {
  return `/run/netns/${name}`;
}

const SERVER_JS = `
const net = require('net');
const srv = net.createServer((s) => { s.on('error', () => {}); s.end('pong ' + process.argv[1]); });
srv.listen(Number(process.argv[2]), '::', () => process.stdout.write('listening\\n'));
process.stdin.on('end', () => process.exit(0)); process.stdin.resume(); // lives exactly as long as the test holds its stdin
`;
const CLIENT_JS = `
const net = require('net');
const c = net.createConnection({ host: process.argv[1], port: Number(process.argv[2]), timeout: 3000 });
let got = '';
c.on('data', (d) => { got += d; });
c.on('end', () => { process.stdout.write(got); process.exit(0); });
c.on('timeout', () => { process.stderr.write('timeout'); process.exit(2); });
c.on('error', (e) => { process.stderr.write(e.message); process.exit(1); });
`;

/**
 * Is \`addr\` (an address inside namespace \`toNs\`) reachable from namespace \`fromNs\`? There is no ping on
 * this machine, so: a TCP listener in \`toNs\`, a connection from \`fromNs\`, both tiny node processes.
 */
export async function reach(fromNs: string, toNs: string, addr: string, port = 7777): Promise<boolean> {
  const server = spawn('ip', ['netns', 'exec', toNs, process.execPath, '-e', SERVER_JS, toNs, String(port)], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('listener did not start')), 10_000);
      server.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
      server.on('exit', () => {
        clearTimeout(timer);
        reject(new Error('listener exited'));
      });
    });
    const out = await shAsync('ip', ['netns', 'exec', fromNs, process.execPath, '-e', CLIENT_JS, addr, String(port)]).catch(() => '');
    return out === `pong ${toNs}`;
  } finally {
    server.stdin!.end();
    server.kill();
  }
}
