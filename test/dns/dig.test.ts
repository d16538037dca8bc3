/**
 * A second opinion from real resolver tooling: BIND's `dig` (and Knot's `kdig` when installed) read our
 * answers over UDP and TCP with their own parsers and must find nothing malformed. A tool that is not
 * installed skips its test with the reason (.ci/run installs dnsutils and knot-dnsutils).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { endpoint, service, snapshot } from '../helpers/snapshot.js';
import { startPlane } from './helpers.js';

const run = promisify(execFile);

async function has(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

const fixture = snapshot('file', {
  services: {
    web: service([endpoint('10.0.0.1', 8080), endpoint('10.0.0.2', 8081, { agentAddress: '192.168.0.2' })], { name: 'web' }),
    big: service(
      Array.from({ length: 80 }, (_, i) => endpoint(`10.3.0.${i + 1}`, 10000 + i)),
      { name: 'big' },
    ),
  },
});

t.test('dig', async (t) => {
  if (!(await has('dig'))) {
    t.plan(0, 'dig is not installed (apt-get install dnsutils)');
    return;
  }
  const { port } = await startPlane(t, [fixture]);
  const dig = async (...args: string[]) => (await run('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args])).stdout;

  const a = await dig('web.marathon.mesos', 'A');
  t.match(a, /status: NOERROR/);
  t.match(a, /flags: qr aa rd;/);
  t.match(a, /web\.marathon\.mesos\.\s+5\s+IN\s+A\s+10\.0\.0\.1/);
  t.match(a, /udp: 1232/, 'EDNS advertised');
  t.notMatch(a, /malformed|parse|trailing/i);
  t.match(a, /recursion requested but not available/, 'RA clear: no upstreams');

  const nx = await dig('nope.marathon.mesos', 'A');
  t.match(nx, /status: NXDOMAIN/);
  t.match(nx, /AUTHORITY SECTION:\nmesos\.\s+5\s+IN\s+SOA\s+ns1\.mesos\. root\.ns1\.mesos\./);

  const srv = await dig('_web._tcp.marathon.mesos', 'SRV');
  t.match(srv, /ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 3/);
  t.match(srv, /IN\s+SRV\s+0 1 8080 web-[a-z0-9]{5}\.marathon\.mesos\./);

  // Large answer: dig gets TC over UDP and retries over TCP by itself.
  const big = await dig('_big._tcp.marathon.mesos', 'SRV');
  t.match(big, /Truncated, retrying in TCP mode/);
  t.match(big, /ANSWER: 80,/);
  const noTcp = await dig('+ignore', '+noedns', '_big._tcp.marathon.mesos', 'SRV');
  t.match(noTcp, /flags: qr aa tc rd;/, 'TC over UDP');
  t.notMatch(noTcp, /malformed/i);

  const tcp = await dig('+tcp', 'WEB.marathon.slave.MESOS', 'A');
  t.match(tcp, /WEB\.marathon\.slave\.MESOS\.\s+5\s+IN\s+A\s+192\.168\.0\.2/, 'case echoed, over TCP');
  t.match(tcp, /\(TCP\)/);

  const ptr = await dig('-x', '10.0.0.1', '+short');
  t.match(ptr, /web\.marathon\.mesos\./);

  const soa = await dig('+short', 'thisdcos.directory', 'SOA');
  t.match(soa, /^ns1\.thisdcos\.directory\. root\.ns1\.thisdcos\.directory\. \d+ 60 600 86400 5/);

  // Several queries on one TCP connection.
  const multi = await dig('+tcp', '+keepopen', 'web.marathon.mesos', 'leader.mesos', 'slave.mesos');
  t.equal((multi.match(/status: NOERROR/g) ?? []).length, 3);
});

t.test('kdig', async (t) => {
  if (!(await has('kdig'))) {
    t.plan(0, 'kdig is not installed (apt-get install knot-dnsutils)');
    return;
  }
  const { port } = await startPlane(t, [fixture]);
  for (const args of [
    ['web.marathon.mesos', 'A'],
    ['_big._tcp.marathon.mesos', 'SRV', '+tcp'],
    ['nope.mesos', 'AAAA'],
    ['mesos', 'NS'],
  ]) {
    const { stdout } = await run('kdig', ['@127.0.0.1', '-p', String(port), '+timeout=2', '+retry=0', ...args]);
    t.notMatch(stdout, /malformed|failed|WARNING/i, `kdig ${args.join(' ')}`);
    t.match(stdout, /status: (NOERROR|NXDOMAIN)/);
  }
});
