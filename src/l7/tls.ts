/**
 * TLS for L7 entrypoints: a certificate map compiled once per table (exact names in a Map, wildcards
 * by their parent domain), looked up by the SNI callback in O(labels), so a handshake costs the same
 * with 10 certificates or 10,000. Mozilla "intermediate" settings: TLS 1.2+, ECDHE + AEAD ciphers,
 * ALPN http/1.1, session tickets for resumption.
 *
 * Certificates come from files (entrypoints.<name>.tls.certificates) today; the cluster CA feeds the same
 * map through `CertificateSource` when it lands. With `tls.auto` and no certificate at all, a
 * development certificate (self-signed, for every route host of the entrypoint) is made in memory so the
 * listener can start; it is logged as such.
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
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

export function secureContext(pair: CertPair, ticketKeys?: Buffer): tls.SecureContext {
  const ctx = tls.createSecureContext({
    cert: pair.cert,
    key: pair.key,
    minVersion: 'TLSv1.2',
    ciphers: INTERMEDIATE_CIPHERS,
    honorCipherOrder: false,
    ecdhCurve: 'X25519:P-256:P-384',
  });
  if (ticketKeys) ctx.context.setTicketKeys(ticketKeys);
  return ctx;
}

export function loadCertFiles(certFile: string, keyFile: string, ticketKeys?: Buffer): LoadedCert {
  const cert = readFileSync(certFile, 'utf8');
  const key = readFileSync(keyFile, 'utf8');
  return loadPem(cert, key, certFile, ticketKeys);
}

export function loadPem(cert: string, key: string, source: string, ticketKeys?: Buffer): LoadedCert {
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
