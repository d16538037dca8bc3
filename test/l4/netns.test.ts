/**
 * The VIP-address case, for real: a network namespace whose `lo` carries VIP addresses (the `dummy` link
 * type dcos-net uses is missing on these kernels), the plane run inside it by netns-child.ts. Needs root
 * and iproute2; skipped with the reason otherwise.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import t from 'tap';

const ROOT = path.join(__dirname, '..', '..');

function canNetns(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (ip netns)';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'iproute2 `ip netns` is not available';
  }
}

const skip = canNetns();

t.test('VIPs bind their own address when it is on this machine, else vips.listen', { skip }, async (t) => {
  const id = randomBytes(3).toString('hex');
  const ns = `portico-l4-${id}`;
  const b = randomBytes(3);
  const v4 = `11.${b[0]}.${b[1]}.${Math.max(1, (b[2] as number) % 254)}`;
  const v6 = ipaddr.IPv6.parse(`fd01:c::${id.slice(0, 4)}:${id.slice(4)}`).toRFC5952String();
  const later = `11.${b[0]}.${b[1] === 255 ? 0 : (b[1] as number) + 1}.9`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['-n', ns, 'addr', 'add', `${v4}/32`, 'dev', 'lo']);
  execFileSync('ip', ['-n', ns, 'addr', 'add', `${v6}/128`, 'dev', 'lo', 'nodad']);

  const child = spawn(
    'ip',
    ['netns', 'exec', ns, process.execPath, '--import', 'tsx', path.join(__dirname, 'netns-child.ts'), v4, v6, later],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const line = stdout.trim().split('\n').pop() ?? '';
  let out: Record<string, unknown>;
  try {
    out = JSON.parse(line) as Record<string, unknown>;
  } catch {
    t.fail(`child printed no JSON (exit ${code}): ${stdout.slice(-500)} ${stderr.slice(-1500)}`);
    return;
  }
  if (out.fatal) {
    t.fail(String(out.fatal));
    return;
  }
  t.equal(code, 0);
  t.same(
    out.listeners,
    ['tcp 127.0.0.1:9191', 'tcp 127.0.0.1:9090', `tcp ${v4}:8080`, `tcp [${v6}]:8443`, `udp ${v4}:5353`].sort(),
    'bound on the VIP address where it is local, on vips.listen otherwise; the unallocated VIP not at all',
  );
  t.equal(out.viaV4, 'ping', 'TCP through the IPv4 VIP address');
  t.equal(out.viaV6, 'ping', 'TCP through the IPv6 VIP address');
  t.equal(out.udp, 're:dns?', 'UDP through the VIP address');
  t.equal(out.laterOnListen, 'ping', 'a VIP whose address is not here is served on vips.listen');
  t.equal(out.bogusOnListen, 'ping', 'EADDRNOTAVAIL on the VIP address falls back to vips.listen');
  t.equal(out.v4OnLoopback, 'error:ECONNREFUSED', 'a VIP on its own address is not also on vips.listen');
  t.match(out.describe, [
    { key: 'tcp/bogus.marathon:9191', binding: 'listen-address', listener: 'tcp 127.0.0.1:9191' },
    { key: 'tcp/later.marathon:9090', binding: 'listen-address' },
    { key: 'tcp/unallocated.marathon:7070', listener: null, error: 'no address allocated yet' },
    { key: 'tcp/web.marathon:8080', binding: 'vip-address', listener: `tcp ${v4}:8080` },
    { key: 'tcp/web6.marathon:8443', binding: 'vip-address' },
    { key: 'udp/dns.marathon:5353', binding: 'vip-address' },
  ]);
  t.ok((out.listenersAfter as string[]).includes(`tcp ${later}:9090`), 'once its address is added, the next table binds the VIP there');
  t.equal(out.laterOnVip, 'ping', 'and serves it');
  t.equal(out.laterOnListenAfter, 'error:ECONNREFUSED', 'the vips.listen listener is closed');
});
