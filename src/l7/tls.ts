/**
 * TLS for L7 entrypoints: a certificate map compiled once per table (exact names in a Map, wildcards
 * by their parent domain), looked up by the SNI callback in O(labels), so a handshake costs the same
 * with 10 certificates or 10,000. Mozilla "intermediate" settings: TLS 1.2+, ECDHE + AEAD ciphers,
 * ALPN http/1.1, session tickets for resumption (keys from a `TicketKeyRing`, so instances that share its
 * keys resume each other's sessions, and a rotation keeps the previous key's tickets working).
 *
 * Certificates come from files (entrypoints.<name>.tls.certificates) and, for `tls.auto` entrypoints, from
 * the cluster CA (the plane's setAutoCertificates, fed by src/pki/auto.ts). With `tls.auto` and no certificate at all, a
 * development certificate (self-signed, for every route host of the entrypoint) is made in memory so the
 * listener can start; it is logged as such.
 */
import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import forge from 'node-forge';

/** Mozilla intermediate (v5.7) cipher list for TLS 1.2; TLS 1.3 suites are OpenSSL's defaults. */
export const INTERMEDIATE_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
  'DHE-RSA-CHACHA20-POLY1305',
].join(':');

export interface CertPair {
  cert: string;
  key: string;
}

export interface LoadedCert {
  /** DNS names (SAN dNSName, or the CN when there is no SAN), lower-case; may include `*.` wildcards. */
  names: string[];
  context: tls.SecureContext;
  notAfter: Date;
  source: string;
  /** The PEM pair, for a server's default context (clients that send no SNI). */
  pem: CertPair;
}

/** Read the names a certificate is valid for. */
export function certificateNames(pem: string): { names: string[]; notAfter: Date } {
  const x = new X509Certificate(pem);
  const names: string[] = [];
  if (x.subjectAltName) {
    for (const part of x.subjectAltName.split(/,\s*/)) {
      if (part.startsWith('DNS:')) names.push(part.slice(4).toLowerCase());
    }
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject);
    if (cn?.[1]) names.push(cn[1].toLowerCase());
  }
  return { names, notAfter: new Date(x.validTo) };
}

/** Bytes of one session-ticket key, in Node's `setTicketKeys` layout: name (16) | HMAC key (16) | AES key (16). */
export const TICKET_KEY_BYTES = 48;

/** A native SecureContext or a tls.Server: what takes one key through Node's public api. */
interface Rekeyable {
  setTicketKeys(keys: Buffer): void;
}

/** The slice of Node's native SecureContext (`tls.SecureContext#context`) the ring uses. */
interface NativeContext extends Rekeyable {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, enc: boolean) => unknown[];
}

interface TicketKey {
  name: Buffer;
  hmac: Buffer;
  aes: Buffer;
  /** The callback's answers for a ticket under this key: resume; resume and issue a new ticket. */
  accept: unknown[];
  renew: unknown[];
  raw: Buffer;
}

function ticketKey(raw: Buffer, which: string): TicketKey {
  if (!Buffer.isBuffer(raw) || raw.length !== TICKET_KEY_BYTES)
    throw new TypeError(
      `the ${which} session-ticket key must be ${TICKET_KEY_BYTES} bytes, got ${Buffer.isBuffer(raw) ? raw.length : typeof raw}`,
    );
  const copy = Buffer.from(raw);
  const name = copy.subarray(0, 16);
  const hmac = copy.subarray(16, 32);
  const aes = copy.subarray(32, 48);
  return { name, hmac, aes, accept: [1, hmac, aes], renew: [2, hmac, aes], raw: copy };
}

/** The answer for a ticket under a key we do not hold: a full handshake (the key fields must still be 16 bytes). */
const UNKNOWN_TICKET: unknown[] = [0, Buffer.alloc(16), Buffer.alloc(16)];

/**
 * The session-ticket keys of a plane: the current key encrypts new tickets; the previous one, while the
 * store keeps it (a grace period after a rotation), still decrypts, and a client resuming under it gets a
 * new ticket under the current key. Every SecureContext of the plane (the servers' own, which OpenSSL
 * consults for tickets, and the SNI ones) answers through one callback that reads the ring, so `set` is
 * seen by the next handshake everywhere: no context is rebuilt and no connection is touched.
 *
 * Node offers one key per context through its public api (`setTicketKeys`); the callback is Node's
 * SecureContext ticket-key hook (`enableTicketKeyCallback`, the one its own resumption tests use). On a
 * Node without it, contexts get the current key through `setTicketKeys` and keep getting it on every
 * `set`: rotation still reaches them, but tickets under the previous key then fall back to a full handshake.
 */
export class TicketKeyRing {
  private cur: TicketKey;
  private prev: TicketKey | undefined;
  /** Contexts (or servers) on the fallback path, re-keyed on every `set`. */
  private readonly fallback = new Set<WeakRef<Rekeyable>>();

  /** Starts with a random key of its own: a plane serves TLS before (or without) shared keys. */
  constructor(current: Buffer = randomBytes(TICKET_KEY_BYTES)) {
    this.cur = ticketKey(current, 'current');
  }

  /** Whether `previous` is held (tickets under it resume). */
  get hasPrevious(): boolean {
    return this.prev !== undefined;
  }

  /** Encrypt under `current` from now on, and still accept `previous`. Throws a TypeError on a key that is not 48 bytes. */
  set(current: Buffer, previous?: Buffer): void {
    const cur = ticketKey(current, 'current');
    const prev = previous === undefined ? undefined : ticketKey(previous, 'previous');
    this.cur = cur;
    this.prev = prev;
    for (const ref of this.fallback) {
      const native = ref.deref();
      if (native) native.setTicketKeys(cur.raw);
      else this.fallback.delete(ref);
    }
  }

  /** Make `ctx` issue and accept tickets under this ring's keys. */
  install(ctx: tls.SecureContext): void {
    this.installNative(ctx.context as NativeContext);
  }

  /**
   * The same for a tls.Server's own context: the one OpenSSL takes ticket keys from, before the SNI
   * callback has picked a certificate. Call again after `server.setSecureContext` (it makes a new one).
   */
  installOnServer(server: tls.Server): void {
    const own = (server as unknown as { _sharedCreds?: tls.SecureContext })._sharedCreds;
    if (own?.context) this.install(own);
    else this.rekeyOnSet(server); // public api only: the current key, renewed on every set
  }

  private installNative(native: NativeContext): void {
    if (typeof native.enableTicketKeyCallback === 'function') {
      native.onticketkeycallback = this.callback;
      native.enableTicketKeyCallback();
    } else this.rekeyOnSet(native);
  }

  private rekeyOnSet(target: Rekeyable): void {
    target.setTicketKeys(this.cur.raw);
    this.fallback.add(new WeakRef(target));
  }

  /** OpenSSL's ticket-key callback through Node: [result, hmacKey, aesKey, (encrypting:) name, iv]. */
  private readonly callback = (name: Buffer, _iv: Buffer, enc: boolean): unknown[] => {
    const cur = this.cur;
    if (enc) return [1, cur.hmac, cur.aes, cur.name, randomBytes(16)];
    if (name.equals(cur.name)) return cur.accept;
    const prev = this.prev;
    if (prev !== undefined && name.equals(prev.name)) return prev.renew;
    return UNKNOWN_TICKET;
  };

  /** Never the keys (logs, api answers). */
  toJSON(): { previous: boolean } {
    return { previous: this.prev !== undefined };
  }
}

/**
 * The session id context of an entrypoint's TLS server. OpenSSL resumes a session only in the context it
 * was made in, and Node's default is a hash of `process.argv`, which differs between instances started
 * with other arguments (another --config); this one is the same on every instance, and differs between
 * entrypoints (a session made on one is not resumed on another). 32 hex characters: OpenSSL's maximum.
 */
export function sessionIdContext(entrypoint: string): string {
  return createHash('sha256').update(`portico l7 entrypoint ${entrypoint}`).digest('hex').slice(0, 32);
}

export function secureContext(pair: CertPair, ticketKeys?: TicketKeyRing): tls.SecureContext {
  const ctx = tls.createSecureContext({
    cert: pair.cert,
    key: pair.key,
    minVersion: 'TLSv1.2',
    ciphers: INTERMEDIATE_CIPHERS,
    honorCipherOrder: false,
    ecdhCurve: 'X25519:P-256:P-384',
  });
  ticketKeys?.install(ctx);
  return ctx;
}

export function loadCertFiles(certFile: string, keyFile: string, ticketKeys?: TicketKeyRing): LoadedCert {
  const cert = readFileSync(certFile, 'utf8');
  const key = readFileSync(keyFile, 'utf8');
  return loadPem(cert, key, certFile, ticketKeys);
}

export function loadPem(cert: string, key: string, source: string, ticketKeys?: TicketKeyRing): LoadedCert {
  const { names, notAfter } = certificateNames(cert);
  return { names, notAfter, context: secureContext({ cert, key }, ticketKeys), source, pem: { cert, key } };
}

/**
 * SNI name → context. Exact names first, then a wildcard `*.parent` for the name's parent domain
 * (one label, as RFC 6125 wildcards match), then the default.
 */
export class CertMap {
  private readonly exact = new Map<string, LoadedCert>();
  private readonly wildcard = new Map<string, LoadedCert>();
  readonly certs: LoadedCert[] = [];
  defaultCert: LoadedCert | undefined;

  add(cert: LoadedCert): void {
    this.certs.push(cert);
    for (const name of cert.names) {
      if (name.startsWith('*.')) {
        if (!this.wildcard.has(name.slice(2))) this.wildcard.set(name.slice(2), cert);
      } else if (!this.exact.has(name)) this.exact.set(name, cert);
    }
    this.defaultCert ??= cert;
  }

  lookup(servername: string | undefined): LoadedCert | undefined {
    if (!servername) return this.defaultCert;
    const name = servername.toLowerCase().replace(/\.$/, '');
    const hit = this.exact.get(name);
    if (hit) return hit;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const w = this.wildcard.get(name.slice(dot + 1));
      if (w) return w;
    }
    return this.defaultCert;
  }

  get size(): number {
    return this.certs.length;
  }
}

/**
 * A self-signed development certificate for `names` (ECDSA P-256 key from node:crypto, the certificate
 * from node-forge... forge cannot sign with ECDSA, so the dev certificate uses an RSA 2048 key).
 * Only used when `tls.auto` is on and no CA or file certificate exists yet.
 */
export function devCertificate(names: string[]): CertPair {
  const dnsNames = names.filter((n) => n !== '*' && n.length > 0);
  if (dnsNames.length === 0) dnsNames.push('localhost');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const pubPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pubPem);
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`;
  const now = Date.now();
  cert.validity.notBefore = new Date(now - 60_000);
  cert.validity.notAfter = new Date(now + 30 * 24 * 3600_000);
  const attrs = [
    { name: 'commonName', value: dnsNames[0] as string },
    { name: 'organizationName', value: 'Portico development certificate' },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: dnsNames.map((value) => ({ type: 2, value })) },
  ]);
  cert.sign(
    forge.pki.privateKeyFromPem(createPrivateKey(keyPem).export({ type: 'pkcs1', format: 'pem' }).toString()),
    forge.md.sha256.create(),
  );
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}
