/**
 * The plugin's ways to the daemon — the Node plugin through libuv's pipe handle directly (its default)
 * and through node:net (its fallback, PORTICO_CNI_CLIENT=net), and the native relay (which runs the Node
 * plugin when it cannot answer) — give the same answers: ADD/CHECK/DEL, a request far larger than one
 * socket write (a GC with 5,000 valid attachments), a daemon that is not there, a socket file nobody
 * listens on, and a daemon that hangs up without answering.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { CniCode } from '../../src/overlay/cni/protocol.js';
import { NATIVE_PLUGIN, NODE_PLUGIN, cni as cniRun, startDaemon, tmpdir } from './helpers.js';

const dir = tmpdir('client');
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const conf = (socket: string, name = 'cl') => ({
  cniVersion: '1.1.0',
  name,
  type: 'bridge',
  ipam: { type: 'portico-cni', socket, ranges: [[{ subnet: '10.8.0.0/24' }]] },
});

for (const client of ['raw', 'net', 'native'] as const) {
  const env: Record<string, string> = client === 'net' ? { PORTICO_CNI_CLIENT: 'net' } : {};
  const plugin = client === 'native' ? NATIVE_PLUGIN : NODE_PLUGIN;
  const cni = (c: Parameters<typeof cniRun>[0]) => cniRun({ plugin, ...c });
  t.test(`${client} client`, async (t) => {
    const d = await startDaemon(path.join(dir, client));
    t.teardown(() => d.close());
    const c = conf(d.socket, `cl-${client}`);
    const add = await cni({ command: 'ADD', config: c, containerId: 'c1', ifName: 'eth0', netns: '/x', env });
    t.equal(add.code, 0, add.stdout + add.stderr);
    t.equal(add.out.ips[0].address, '10.8.0.2/24');
    t.equal(
      (await cni({ command: 'CHECK', config: { ...c, prevResult: add.out }, containerId: 'c1', ifName: 'eth0', netns: '/x', env })).code,
      0,
      'CHECK',
    );

    // A request of ~300 KB: the write completes asynchronously, in many pieces on the daemon side.
    const valid = Array.from({ length: 5000 }, (_, i) => ({ containerID: `container-with-a-long-id-${i}`, ifname: 'eth0' }));
    valid.push({ containerID: 'c1', ifname: 'eth0' });
    const gc = await cni({ command: 'GC', config: { ...c, 'cni.dev/valid-attachments': valid }, cniPath: '/usr/lib/cni', env });
    t.equal(gc.code, 0, gc.stdout + gc.stderr);
    t.equal(d.overlay.leases().filter((l) => l.network === c.name).length, 1, 'GC kept the valid lease');

    t.equal((await cni({ command: 'DEL', config: c, containerId: 'c1', ifName: 'eth0', env })).code, 0, 'DEL');
    t.equal(d.overlay.leases().filter((l) => l.network === c.name).length, 0, 'released');

    const nobody = path.join(dir, `${client}-nobody.sock`);
    const down = await cni({ command: 'ADD', config: conf(nobody), containerId: 'c2', ifName: 'eth0', netns: '/x', env });
    t.match(down.out, { code: CniCode.TRY_AGAIN_LATER, msg: /unavailable/, details: /ENOENT/ }, 'no socket: 11, ENOENT');

    fs.writeFileSync(nobody, '');
    const refused = await cni({ command: 'ADD', config: conf(nobody), containerId: 'c2', ifName: 'eth0', netns: '/x', env });
    t.match(
      refused.out,
      { code: CniCode.TRY_AGAIN_LATER, details: /ECONNREFUSED/ },
      'a file that is not a listening socket: 11, ECONNREFUSED',
    );
    fs.rmSync(nobody);

    // A "daemon" that reads the request and hangs up without a word.
    const mute = path.join(dir, `${client}-mute.sock`);
    const server = net.createServer((s) => s.once('data', () => s.end()));
    await new Promise<void>((r) => server.listen(mute, r));
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    const hung = await cni({ command: 'ADD', config: conf(mute), containerId: 'c3', ifName: 'eth0', netns: '/x', env });
    t.equal(hung.code, 1);
    t.match(hung.out, { code: CniCode.TRY_AGAIN_LATER, details: /EPROTO.*without a valid answer/ }, 'hung up: 11, EPROTO');
  });
}
