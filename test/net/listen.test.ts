/**
 * The socket broker (src/net/listen.ts) with real processes: this test process is the supervisor (a real
 * SocketBroker), and test/net/fixtures/listen-worker.ts is forked as the workers, each taking its sockets
 * through BrokeredSockets over the fork IPC channel. Both workers serve one port; one dies and the other
 * goes on; a replacement gets the connections queued while no worker ran; refusals come back as errors
 * with their code. Then the real planes (fixtures/planes-worker.ts): L7 (libuv and TLS), L4 (TCP and UDP
 * VIPs) and DNS in two workers serve the same sockets, and give them back when they stop.
 */
import { fork, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { BrokeredSockets, DIRECT, SocketBroker, bindDgram, dgramMessage, netMessage, type BrokerReply } from '../../src/net/listen.js';
import { header, query, tcp as dnsTcp, udp as dnsUdp } from '../dns/helpers.js';
import { echoServer, exchange, freePort, udpEcho } from '../l4/helpers.js';
import { Recorder, once, withTimeout } from '../helpers/wait.js';

const FIXTURE = path.join(__dirname, 'fixtures', 'listen-worker.ts');
const PLANES = path.join(__dirname, 'fixtures', 'planes-worker.ts');
const HOST = '127.0.0.1';

type Result = Record<string, unknown> & { t: 'result'; id: number; pid: number };

class Worker {
  readonly messages = new Recorder<Record<string, unknown>>();
  readonly exited: Promise<void>;
  private nextId = 1;

  private constructor(
    readonly w: number,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise<void>((r) => child.once('exit', () => r()));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Fork worker `w`, wired to `broker` as a supervisor would; resolves once it is up. */
  static async start(t: Test, broker: SocketBroker, w: number, fixture = FIXTURE): Promise<Worker> {
    const child = fork(fixture, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const worker = new Worker(w, child);
    child.on('message', (msg: unknown) => {
      const reply = (m: BrokerReply, handle?: unknown): void => {
        if (child.connected) child.send(m, handle as net.Server | undefined);
      };
      if (broker.handle(w, msg, reply)) return;
      worker.messages.push(msg as Record<string, unknown>);
    });
    child.once('exit', () => broker.forget(w));
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await worker.exited;
    });
    await worker.messages.until((m) => m.t === 'hello', 30_000, `worker ${w} to start`);
    return worker;
  }

  async cmd(op: string, args: Record<string, unknown> = {}): Promise<Result> {
    const id = this.nextId++;
    this.child.send({ t: 'cmd', id, op, ...args });
    const r = (await this.messages.until((m) => m.t === 'result' && m.id === id, 20_000, `worker ${this.w}: ${op}`)) as Result;
    if (typeof r.error === 'string') throw new Error(`worker ${this.w}: ${op}: ${r.error}`);
    return r;
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await withTimeout(this.exited, 10_000, `worker ${this.w} to exit`);
  }
}

/** A connection whose first line (the serving worker's pid) has been read. */
interface Conn {
  socket: net.Socket;
  pid: number;
  /** Everything read after the first line. */
  rest: Recorder<string>;
}

async function connect(port: number): Promise<Conn> {
  const socket = net.connect(port, HOST);
  socket.setEncoding('utf8');
  const rest = new Recorder<string>();
  const pid = await withTimeout(
    new Promise<number>((resolve, reject) => {
      let buf = '';
      let got = false;
      socket.on('error', reject);
      socket.on('data', (d: string) => {
        if (got) {
          rest.push(d);
          return;
        }
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        got = true;
        resolve(Number(buf.slice(0, nl)));
        if (buf.length > nl + 1) rest.push(buf.slice(nl + 1));
      });
    }),
    10_000,
    `the pid line on a connection to ${port}`,
  );
  return { socket, pid, rest };
}

/** Echo `text` on `c` and wait for it to come back. */
async function echo(c: Conn, text: string): Promise<void> {
  const from = c.rest.items.length;
  c.socket.write(text);
  let got = '';
  await c.rest.until(
    (d) => {
      got += d;
      return got.includes(text);
    },
    10_000,
    `echo of ${text}`,
    from,
  );
}

/**
 * Connections to `port`, a few at a time, until each pid of `want` answered one (at most `max`). The ones
 * answered are kept open for the caller (one per pid) and the others closed.
 */
async function connectUntilEach(port: number, want: number[], max = 400): Promise<Map<number, Conn>> {
  const seen = new Map<number, Conn>();
  for (let made = 0; made < max && seen.size < want.length; made += 8) {
    const conns = await Promise.all(Array.from({ length: 8 }, () => connect(port)));
    for (const c of conns) {
      if (!seen.has(c.pid)) seen.set(c.pid, c);
      else c.socket.destroy();
    }
  }
  return seen;
}

/** Datagrams to `port` until each pid of `want` answered one (at most `max`): the pids seen. */
async function datagramsUntilEach(port: number, want: number[], max = 400): Promise<Set<number>> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, HOST, r));
  const seen = new Set<number>();
  const answers = new Recorder<number>();
  sock.on('message', (m) => {
    seen.add(Number(String(m)));
    answers.push(Number(String(m)));
  });
  try {
    for (let sent = 0; sent < max && want.some((p) => !seen.has(p)); sent += 8) {
      const before = answers.items.length;
      for (let i = 0; i < 8; i++) sock.send('who', port, HOST);
      await answers.until(() => answers.items.length >= before + 8, 10_000, 'answers to 8 datagrams', before).catch(() => undefined);
    }
  } finally {
    sock.close();
  }
  return seen;
}

function refused(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST);
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

t.test('two workers serve one TCP and one UDP port; the last release closes it', async (t) => {
  const broker = new SocketBroker();
  t.teardown(() => broker.close());
  const [a, b] = await Promise.all([Worker.start(t, broker, 0), Worker.start(t, broker, 1)]);
  const ra = await a.cmd('serve', { host: HOST, port: 0, name: 'web', engine: 'net' });
  const rb = await b.cmd('serve', { host: HOST, port: 0, name: 'web', engine: 'uv' });
  t.equal(rb.tcpPort, ra.tcpPort, 'port 0 of one listener: both workers got the same socket');
  t.equal(ra.udpPort, ra.tcpPort, 'UDP on the TCP port');
  const port = ra.tcpPort as number;
  t.same(
    broker.sockets().map((s) => [s.key, s.holders]),
    [
      [`tcp ${HOST}:0#web`, [0, 1]],
      [`udp4 ${HOST}:${port}`, [0, 1]],
    ],
    'the broker holds one TCP and one UDP socket, for both workers',
  );

  const conns = await connectUntilEach(port, [a.pid, b.pid]);
  t.same([...conns.keys()].sort(), [a.pid, b.pid].sort(), 'connections to the one port are answered by both workers');
  for (const c of conns.values()) await echo(c, 'ping');
  for (const c of conns.values()) c.socket.destroy();
  const pids = await datagramsUntilEach(port, [a.pid, b.pid]);
  t.same([...pids].sort(), [a.pid, b.pid].sort(), 'datagrams to the one port are answered by both workers');

  await a.cmd('release');
  t.same(
    broker.sockets().map((s) => s.holders),
    [[1], [1]],
    'a release by one worker leaves the sockets to the other',
  );
  const after = await connect(port);
  t.equal(after.pid, b.pid, 'the other worker still serves');
  after.socket.destroy();
  await b.cmd('release');
  t.same(broker.sockets(), [], 'the last release closes the supervisor copy');
  t.equal(await refused(port), 'ECONNREFUSED', 'nobody listens on the port any more');
});

t.test('a worker killed: the other serves on, and a connection it holds is not dropped', async (t) => {
  const broker = new SocketBroker();
  t.teardown(() => broker.close());
  const [a, b] = await Promise.all([Worker.start(t, broker, 0), Worker.start(t, broker, 1)]);
  const { tcpPort } = await a.cmd('serve', { host: HOST, port: 0, name: 'web' });
  await b.cmd('serve', { host: HOST, port: 0, name: 'web' });
  const port = tcpPort as number;
  const conns = await connectUntilEach(port, [a.pid, b.pid]);
  t.equal(conns.size, 2, 'a connection to each worker');
  const onA = conns.get(a.pid)!;
  const onB = conns.get(b.pid)!;
  const aClosed = once(onA.socket, 'close', 10_000);
  onA.socket.on('error', () => {});

  await a.kill();
  await aClosed;
  t.pass("the killed worker's connection ends with it");
  t.same(
    broker.sockets().map((s) => s.holders),
    [[1], [1]],
    'the dead worker is forgotten',
  );
  await echo(onB, 'still here');
  t.pass("the survivor's open connection goes on");
  for (let i = 0; i < 16; i++) {
    const c = await connect(port);
    t.equal(c.pid, b.pid, `new connection ${i} is answered by the survivor`);
    c.socket.destroy();
  }
  const pids = await datagramsUntilEach(port, [b.pid], 16);
  t.same([...pids], [b.pid], 'datagrams too');
  onB.socket.destroy();
});

t.test('the only worker killed and replaced: what came meanwhile waits in the kernel for the replacement', async (t) => {
  const broker = new SocketBroker();
  t.teardown(() => broker.close());
  const first = await Worker.start(t, broker, 0);
  const { tcpPort } = await first.cmd('serve', { host: HOST, port: 0, name: 'solo', engine: 'uv' });
  const port = tcpPort as number;
  const c0 = await connect(port);
  t.equal(c0.pid, first.pid);
  c0.socket.destroy();

  await first.kill();
  t.same(
    broker.sockets().map((s) => [s.key, s.holders]),
    [
      [`tcp ${HOST}:0#solo`, []],
      [`udp4 ${HOST}:${port}`, []],
    ],
    'no worker holds the sockets; the supervisor keeps them',
  );

  // While no worker runs: the connection is made (the socket is still listening) and waits in the backlog.
  const waiting = connect(port);
  const client = dgram.createSocket('udp4');
  t.teardown(() => client.close());
  await new Promise<void>((r) => client.bind(0, HOST, r));
  const answer = once<[Buffer]>(client, 'message', 20_000);
  client.send('who', port, HOST);

  const second = await Worker.start(t, broker, 0);
  const r = await second.cmd('serve', { host: HOST, port: 0, name: 'solo', engine: 'uv' });
  t.equal(r.tcpPort, port, 'the replacement gets the same socket');
  const c1 = await waiting;
  t.equal(c1.pid, second.pid, 'the connection made while no worker ran is answered by the replacement');
  await echo(c1, 'queued');
  c1.socket.destroy();
  const [msg] = await answer;
  t.equal(Number(String(msg)), second.pid, 'the datagram sent while no worker ran is answered by the replacement');
});

t.test('refusals come back as errors with their code; port 0 is per listener name', async (t) => {
  const broker = new SocketBroker();
  t.teardown(() => broker.close());
  const [a, b] = await Promise.all([Worker.start(t, broker, 0), Worker.start(t, broker, 1)]);

  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, HOST, r));
  t.teardown(() => taken.close());
  const tport = (taken.address() as net.AddressInfo).port;
  const tr = await a.cmd('try', { kind: 'tcp', host: HOST, port: tport, name: 'x' });
  t.match(tr, { ok: false, code: 'EADDRINUSE', syscall: 'listen', message: `listen EADDRINUSE ${HOST}:${tport}` }, 'a taken TCP port');

  const utaken = dgram.createSocket('udp4');
  await new Promise<void>((r) => utaken.bind(0, HOST, r));
  t.teardown(() => utaken.close());
  const uport = utaken.address().port;
  const ur = await a.cmd('try', { kind: 'udp4', host: HOST, port: uport, name: 'x' });
  t.match(ur, { ok: false, code: 'EADDRINUSE', syscall: 'bind' }, 'a taken UDP port');
  t.same(broker.sockets(), [], 'nothing is kept of a failed bind');

  const one = await a.cmd('try', { kind: 'tcp', host: HOST, port: 0, name: 'one' });
  const two = await a.cmd('try', { kind: 'tcp', host: HOST, port: 0, name: 'two' });
  const oneAgain = await b.cmd('try', { kind: 'tcp', host: HOST, port: 0, name: 'one' });
  t.ok(one.ok && two.ok && oneAgain.ok);
  t.not(one.port, two.port, 'two port-0 listeners get two sockets');
  t.equal(oneAgain.port, one.port, 'the same port-0 listener in another worker gets the same socket');
  const twice = await a.cmd('try', { kind: 'tcp', host: HOST, port: 0, name: 'one' });
  t.match(twice, { ok: false, code: 'EADDRINUSE' }, 'one worker cannot hold a socket twice (as one process cannot bind twice)');
  const fixed = await b.cmd('try', { kind: 'tcp', host: HOST, port: one.port, name: 'other' });
  t.match(fixed, { ok: false, code: 'EADDRINUSE' }, 'a fixed port some listener serves is taken, whatever the broker');
});

t.test('the broker answers only its own messages, and refuses bad requests', async (t) => {
  const broker = new SocketBroker();
  t.teardown(() => broker.close());
  const replies: BrokerReply[] = [];
  t.equal(
    broker.handle(0, { t: 'to-control', msg: {} }, (m) => replies.push(m)),
    false,
  );
  t.equal(
    broker.handle(0, 'text', () => {}),
    false,
  );
  t.equal(
    broker.handle(0, { t: 'listen', id: 7, kind: 'sctp', host: HOST, port: 1, name: 'x' }, (m) => replies.push(m)),
    true,
  );
  t.equal(
    broker.handle(0, { t: 'listen', id: 8, kind: 'tcp', host: 'localhost', port: 1, name: 'x' }, (m) => replies.push(m)),
    true,
  );
  t.match(replies, [
    { t: 'listen-err', id: 7, code: 'EINVAL' },
    { t: 'listen-err', id: 8, code: 'EINVAL' },
  ]);
  t.equal(
    broker.handle(0, { t: 'release', kind: 'tcp', host: HOST, port: 1, name: 'x' }, () => {}),
    true,
    'a release of nothing is taken',
  );

  let handle: unknown;
  broker.handle(3, { t: 'listen', id: 9, kind: 'udp6', host: '::1', port: 0, name: 'v6' }, (m, h) => {
    replies.push(m);
    handle = h;
  });
  const last = replies.at(-1)!;
  if (last.t === 'listen-err' && (last.code === 'EADDRNOTAVAIL' || last.code === 'EAFNOSUPPORT')) {
    t.pass('no ::1 on this machine');
    return;
  }
  t.match(last, { t: 'listen-ok', id: 9, address: '::1' });
  t.ok(handle, 'sent with the handle');
  broker.forget(3);
  t.equal(broker.sockets().length, 1, 'forget keeps the socket');
  t.equal(broker.prune(), 1, 'prune closes what nobody holds');
  t.same(broker.sockets(), []);
});

t.test('DIRECT binds here; its errors read as net and dgram said them', async (t) => {
  const got = await DIRECT.tcp(HOST, 0, 16, 'd');
  t.ok(got.port > 0);
  const server = net.createServer((s) => s.end('hi'));
  await new Promise<void>((r) => server.listen(got.handle, 16, r));
  t.teardown(() => server.close());
  const data = await new Promise<string>((resolve, reject) => {
    const s = net.connect(got.port, HOST);
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (buf += d));
    s.on('end', () => resolve(buf));
    s.on('error', reject);
  });
  t.equal(data, 'hi', 'net.Server serves a handle from the source');
  const err = (await DIRECT.tcp(HOST, got.port, 16, 'e').catch((e: unknown) => e)) as NodeJS.ErrnoException;
  t.match(
    err,
    { code: 'EADDRINUSE', syscall: 'listen', message: `listen EADDRINUSE ${HOST}:${got.port}` },
    'as libuv has it: EADDRINUSE at listen',
  );
  t.equal(netMessage(err), `listen EADDRINUSE: address already in use ${HOST}:${got.port}`, "net.Server's words");

  const u = await DIRECT.udp('udp4', HOST, 0, 'u');
  const sock = dgram.createSocket('udp4');
  await bindDgram(sock, u.handle);
  t.teardown(() => sock.close());
  t.equal(sock.address().port, u.port, 'dgram adopts the handle');
  const uerr = (await DIRECT.udp('udp4', HOST, u.port, 'v').catch((e: unknown) => e)) as NodeJS.ErrnoException;
  t.equal(dgramMessage(uerr), `bind EADDRINUSE ${HOST}:${u.port}`, "dgram's words");
});

/** A body over HTTP or HTTPS (Host a.test, no keep-alive). */
function get(mod: typeof http | typeof https, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = mod.get(
      { host: HOST, port, path: '/', headers: { host: 'a.test' }, agent: false, servername: 'a.test', rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', reject);
  });
}

async function udpRoundTrip(port: number, text: string): Promise<string> {
  const s = dgram.createSocket('udp4');
  try {
    await new Promise<void>((r) => s.bind(0, HOST, r));
    const answer = once<[Buffer]>(s, 'message', 5_000);
    s.send(text, port, HOST);
    return String((await answer)[0]);
  } finally {
    s.close();
  }
}

t.test('the L7, L4 and DNS planes of two workers serve the same sockets, and stop releases them', async (t) => {
  const broker = new SocketBroker();
  t.teardown(() => broker.close());
  const backend = http.createServer((_req, res) => res.end('from the backend'));
  await new Promise<void>((r) => backend.listen(0, HOST, r));
  t.teardown(() => backend.close());
  const echo = await echoServer(t);
  const uecho = await udpEcho(t);
  const vipPorts = { tcp: await freePort('tcp'), udp: await freePort('udp') };
  const backends = { http: (backend.address() as net.AddressInfo).port, echo: echo.port, uecho: uecho.port };
  const workers = await Promise.all([Worker.start(t, broker, 0, PLANES), Worker.start(t, broker, 1, PLANES)]);
  const started = await Promise.all(
    workers.map((w) => {
      w.child.send({ t: 'start', backends, vipPorts });
      return w.messages.until((m) => m.t === 'started', 30_000, `worker ${w.w}'s planes to start`);
    }),
  );
  type Ports = { web: number; secure: number; l4: string[]; dns: number; errors: string[] };
  for (const s of started) t.same([s.error, (s.ports as Ports | undefined)?.errors], [undefined, []], 'the planes started without errors');
  const ports = started[0]!.ports as Ports;
  t.same(started[1]!.ports, started[0]!.ports, 'both workers serve the same addresses');
  t.same(ports.l4.sort(), [`tcp ${HOST}:${vipPorts.tcp}`, `udp ${HOST}:${vipPorts.udp}`]);
  t.same(
    broker.sockets().map((s) => s.holders),
    broker.sockets().map(() => [0, 1]),
    'every socket is held by both workers',
  );
  t.equal(broker.sockets().length, 6, 'web, secure, two VIPs, DNS over TCP and UDP');

  const served = async (when: string): Promise<void> => {
    t.equal(await get(http, ports.web), 'from the backend', `${when}: HTTP entrypoint`);
    t.equal(await get(https, ports.secure), 'from the backend', `${when}: HTTPS entrypoint`);
    t.equal(String(await exchange(vipPorts.tcp, 'over tcp')), 'over tcp', `${when}: TCP VIP`);
    t.equal(await udpRoundTrip(vipPorts.udp, 'over udp'), 'over udp', `${when}: UDP VIP`);
    const q = query({ name: 'a.test', id: 0x4242 });
    t.match(header(await dnsUdp(ports.dns, q)), { id: 0x4242, qr: true }, `${when}: DNS over UDP`);
    t.match(header(await dnsTcp(ports.dns, q)), { id: 0x4242, qr: true }, `${when}: DNS over TCP`);
  };
  for (let i = 0; i < 4; i++) await served(`both workers, round ${i}`);
  await workers[0]!.kill();
  await served('one worker killed');

  workers[1]!.child.send({ t: 'stop' });
  await workers[1]!.messages.until((m) => m.t === 'stopped', 20_000, 'the planes to stop');
  t.same(broker.sockets(), [], 'the planes released every socket when they stopped');
  t.equal(await refused(ports.web), 'ECONNREFUSED');
});

t.test('a worker rebuilds a refusal as the error it was, and gives up when the channel closes', async (t) => {
  const sent: unknown[] = [];
  const channel = Object.assign(new EventEmitter(), { connected: true, send: (m: unknown) => sent.push(m) });
  const sockets = new BrokeredSockets(channel);
  const refusedTcp = sockets.tcp(HOST, 80, 16, 'web');
  t.match(sent, [{ t: 'listen', id: 1, kind: 'tcp', host: HOST, port: 80, backlog: 16, name: 'web' }]);
  channel.emit('message', { t: 'to-worker', id: 1 }, undefined);
  channel.emit('message', { t: 'listen-err', id: 1, code: 'EACCES', errno: -13, syscall: 'bind', message: `bind EACCES ${HOST}:80` });
  const err = (await refusedTcp.catch((e: unknown) => e)) as NodeJS.ErrnoException;
  t.match(err, { code: 'EACCES', errno: -13, syscall: 'bind', message: `bind EACCES ${HOST}:80`, address: HOST, port: 80 });
  t.equal(netMessage(err), `listen EACCES: permission denied ${HOST}:80`, "in net.Server's words as before");

  const waiting = sockets.udp('udp4', HOST, 53, 'dns');
  channel.connected = false;
  channel.emit('disconnect');
  await t.rejects(waiting, /channel to the supervisor closed/);
  sockets.release({ kind: 'udp4', host: HOST, port: 53, name: 'dns' });
  t.equal(sent.length, 2, 'nothing is sent on a closed channel');
  await t.rejects(sockets.tcp(HOST, 81, 16, 'x'), /no IPC channel/);
});
