/**
 * Node's own llhttp as an oracle: a real `node:http` server on 127.0.0.1:0 (requireHostHeader,
 * insecureHTTPParser off) that records, per TCP connection and in order, every request head Node
 * parsed — method, url, rawHeaders, then the full body and rawTrailers — and what became of it:
 * delivered ('request', 'checkExpectation', 'upgrade' or 'connect'), or refused without an event (a
 * 400 for a missing Host), plus any clientError.
 *
 * Heads are recorded through the server's `IncomingMessage` option: Node constructs one per parsed head
 * before it decides anything, so a request it refuses silently still holds its place in the sequence.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface NodeMessage {
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
  trailers: string[];
  /** The request became a tunnel (upgrade or CONNECT): nothing after its head was parsed. */
  tunnel: boolean;
}

export interface NodeVerdict {
  /** The messages Node accepted, in order, up to the first one it refused. */
  messages: NodeMessage[];
  /**
   * Why Node refused the message after those: a clientError code, 'no-host' (answered 400 without an
   * event), 'incomplete' (delivered but its body never ended), or 'timeout'. Undefined when Node refused
   * nothing (it may still have dropped an incomplete head at EOF without a word).
   */
  error?: string;
}

class Recorded extends http.IncomingMessage {
  delivered = false;
  tunnel = false;
  ended = false;
  body = '';
  constructor(socket: net.Socket) {
    super(socket);
    recordsOf(socket).heads.push(this);
  }
}

interface Records {
  heads: Recorded[];
  clientError?: string;
}

const bySocket = new WeakMap<net.Socket, Records>();
function recordsOf(socket: net.Socket): Records {
  let r = bySocket.get(socket);
  if (!r) bySocket.set(socket, (r = { heads: [] }));
  return r;
}

export class NodeOracle {
  /** Server-side sockets by their remote (our client's local) port, until the client reads them. */
  private readonly sockets = new Map<number, net.Socket>();
  private server!: http.Server;
  private port = 0;

  async start(): Promise<void> {
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const m = req as Recorded;
      m.delivered = true;
      req.on('data', (c: Buffer) => {
        m.body += c.toString('latin1');
      });
      req.on('end', () => {
        m.ended = true;
        res.end('ok');
      });
      req.on('error', () => {});
    };
    const onTunnel = (req: http.IncomingMessage, socket: net.Socket): void => {
      const m = req as Recorded;
      m.delivered = true;
      m.tunnel = true;
      m.ended = true;
      socket.destroy();
    };
    this.server = http.createServer({ requireHostHeader: true, insecureHTTPParser: false, IncomingMessage: Recorded }, onRequest);
    this.server.on('checkExpectation', onRequest);
    this.server.on('upgrade', onTunnel);
    this.server.on('connect', onTunnel);
    this.server.on('connection', (socket: net.Socket) => {
      this.sockets.set(socket.remotePort ?? -1, socket);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
      recordsOf(socket).clientError ??= err.code ?? 'clientError';
      socket.destroy();
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Send `input` on its own connection, half-close, and report what Node made of it. */
  send(input: Buffer, timeoutMs = 5000): Promise<NodeVerdict> {
    return new Promise((resolve) => {
      const sock = net.connect(this.port, '127.0.0.1');
      let localPort = -1;
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        sock.destroy();
      }, timeoutMs);
      sock.on('connect', () => {
        localPort = sock.localPort ?? -1;
        sock.end(input);
      });
      sock.on('data', () => {});
      sock.on('error', () => {});
      sock.on('close', () => {
        clearTimeout(timer);
        const server = this.sockets.get(localPort);
        this.sockets.delete(localPort);
        const finish = (): void => resolve(verdict(server ? recordsOf(server) : { heads: [] }, timedOut));
        // The server's side may not have seen the close yet; its last events precede its own close.
        if (!server || server.destroyed) setImmediate(finish);
        else server.once('close', () => setImmediate(finish));
      });
    });
  }
}

function verdict(r: Records, timedOut: boolean): NodeVerdict {
  const messages: NodeMessage[] = [];
  for (const h of r.heads) {
    if (!h.delivered) return { messages, error: 'no-host' };
    if (!h.ended) return { messages, error: 'incomplete' };
    messages.push({
      method: h.method ?? '',
      url: h.url ?? '',
      rawHeaders: h.rawHeaders,
      body: h.body,
      trailers: h.rawTrailers,
      tunnel: h.tunnel,
    });
    if (h.tunnel) break;
  }
  if (timedOut) return { messages, error: 'timeout' };
  return r.clientError ? { messages, error: r.clientError } : { messages };
}
