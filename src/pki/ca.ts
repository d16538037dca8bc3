/**
 * The cluster CA: a root and an intermediate that signs leaves, shared by every instance on one store.
 *
 * Store layout (all under `portico/pki/`):
 *   ca/state          JSON: both CA certificates, their private keys sealed (see crypto.ts), key type, origin
 *   issued/<serial>   JSON: every certificate issued (no key): names, validity, revocation
 *   crl               JSON: the current CRL (PEM), regenerated on each revocation
 *
 * Creation is decided by compare-and-set on `ca/state` (expected revision 0): instances starting together
 * may each generate keys, but exactly one state is written and every instance then uses that one.
 * Each instance watches `ca/` and reloads when another instance imports or re-creates the CA.
 */
import { createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import net from 'node:net';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import { isValidDnsName } from '../model/names.js';
import { tryLock } from '../store/lock.js';
import type { Store, Watch } from '../store/types.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import {
  generateKey,
  importSigningKey,
  isKeyType,
  keyTypeOf,
  newSerial,
  normalizePrivateKey,
  SealedBox,
  signingAlgorithm,
  toPem,
  x509,
  type CryptoKey,
  type KeyType,
} from './crypto.js';

export const CA_PREFIX = 'portico/pki/ca/';
export const CA_STATE_KEY = 'portico/pki/ca/state';
export const ISSUED_PREFIX = 'portico/pki/issued/';
export const CRL_KEY = 'portico/pki/crl';
const PRUNE_LOCK_KEY = 'portico/pki/prune-lock';

const DAY_MS = 86_400_000;

export type Usage = 'server' | 'client' | 'both';

/** Subject attributes beyond CN (the DC/OS api's `names`). */
export interface SubjectNames {
  C?: string;
  ST?: string;
  L?: string;
  O?: string;
  OU?: string;
}

export interface IssueRequest {
  /** DNS names (a leading `*.` makes a wildcard). At least one name or IP. */
  hosts: string[];
  ips?: string[];
  /** Default: the first host (or IP). Omitted from the subject if longer than 64 characters. */
  cn?: string;
  names?: SubjectNames;
  usage?: Usage;
  /** Default: the CA's `leafKeyType` (ECDSA P-256). */
  keyType?: KeyType;
  /** Lifetime in days (fractions allowed); default the CA's `leafTtlDays`; capped at the intermediate's expiry. */
  ttlDays?: number;
}

export interface IssuedCertificate {
  certPem: string;
  /** The intermediate (what a server sends after its leaf). The root is `ClusterCA.info().rootPem`. */
  chainPem: string;
  /** PKCS#8 PEM. The only place a leaf key leaves the CA: to the caller that asked for it. */
  keyPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface SignedCertificate {
  certPem: string;
  chainPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  hosts: string[];
  ips: string[];
}

/** What `sign` accepts in a CSR. */
export interface SignPolicy {
  /** DNS names must equal or end in one of these (`example.test` allows `a.example.test`). Default: any. */
  allowedSuffixes?: string[];
  /** Allow IP SANs. Default true. */
  allowIps?: boolean;
  /** Allow wildcard names (`*.example.test`). Default true. */
  allowWildcards?: boolean;
  usage?: Usage;
  ttlDays?: number;
  /** Replace the CSR's names with these (the cfssl sign api's `hosts`). */
  hosts?: string[];
}

export type RevocationReason = keyof typeof x509.X509CrlReason;

export interface CertRecord {
  serial: string;
  hosts: string[];
  ips: string[];
  cn?: string;
  usage: Usage;
  keyType: KeyType;
  notBefore: string;
  notAfter: string;
  issuedAt: string;
  /** `csr` when signed from a caller's CSR (we never saw the key). */
  source: 'issue' | 'csr';
  certPem: string;
  revoked?: { at: string; reason: RevocationReason };
}

export interface CaInfo {
  rootPem: string;
  intermediatePem: string;
  keyType: KeyType;
  imported: boolean;
  createdAt: string;
  root: CertSummary;
  intermediate: CertSummary;
  /** Names the master key the CA keys are sealed under (not the key). */
  keyId: string;
}

export interface CertSummary {
  subject: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  fingerprint256: string;
}

export interface ImportRequest {
  /** The operator's CA certificate: a root (self-signed) or an intermediate. */
  certPem: string;
  keyPem: string;
  /** For an intermediate: its issuer chain up to and including the root, PEM. */
  chainPem?: string;
  /** Replace an existing CA. Certificates already issued stay valid under the old one. */
  force?: boolean;
  /** Key type of the intermediate generated under an imported root. Default: the CA's `keyType`. */
  keyType?: KeyType;
}

export interface ClusterCAOptions {
  store: Store;
  box: SealedBox;
  logger?: Logger;
  /** CRL distribution point put in every leaf: `<api base>/v1/crl`. Omitted when unset. */
  crlUrl?: string;
  /** Root and intermediate key type on creation. Default ecdsa-p256. */
  keyType?: KeyType;
  leafKeyType?: KeyType;
  /** Default leaf lifetime. Default 90 days. */
  leafTtlDays?: number;
  /** Default policy of `sign`. */
  policy?: SignPolicy;
  /** Subject organisation of the CA certificates. Default "Portico". */
  organization?: string;
  now?: () => Date;
}

interface StoredState {
  v: 1;
  keyType: KeyType;
  imported: boolean;
  createdAt: string;
  keyId: string;
  root: { certPem: string; key?: string };
  intermediate: { certPem: string; key: string };
}

interface Signer {
  revision: number;
  state: StoredState;
  cert: x509.X509Certificate;
  key: CryptoKey;
  keyType: KeyType;
  skid: string;
  rootPem: string;
  chainPem: string;
}

const ROOT_AAD = 'portico/pki/ca/root';
const INTER_AAD = 'portico/pki/ca/intermediate';

export class ClusterCA {
  private readonly store: Store;
  private readonly box: SealedBox;
  private readonly log: Logger;
  private readonly now: () => Date;
  private signer: Signer | undefined;
  private loading: Promise<Signer> | undefined;
  private watch: Watch | undefined;

  constructor(private readonly opts: ClusterCAOptions) {
    this.store = opts.store;
    this.box = opts.box;
    this.log = (opts.logger ?? silentLogger).child({ component: 'pki' });
    this.now = opts.now ?? (() => new Date());
  }

  /** Create the CA if the store has none. `created` is false when one already existed (possibly made by another instance). */
  async init(opts: { keyType?: KeyType } = {}): Promise<CaInfo & { created: boolean }> {
    const existed = (await this.store.get(CA_STATE_KEY)) !== undefined;
    const s = await this.ensure(opts.keyType);
    return { ...this.describe(s), created: !existed && this.createdByUs.has(s.state) };
  }

  /** States this instance wrote (so `init` can say whether it created the CA or found one). */
  private readonly createdByUs = new WeakSet<StoredState>();

  async info(): Promise<CaInfo> {
    return this.describe(await this.ensure());
  }

  async rootPem(): Promise<string> {
    return (await this.ensure()).rootPem;
  }

  /** The intermediate, PEM: what follows a leaf in a served chain. */
  async chainPem(): Promise<string> {
    return (await this.ensure()).chainPem;
  }

  /** Take the operator's CA. A root gets a fresh intermediate under it; an intermediate is used as is. */
  async import(req: ImportRequest): Promise<CaInfo> {
    const key = await normalizePrivateKey(req.keyPem);
    const cert = parseCert(req.certPem);
    const certSpki = Buffer.from(cert.publicKey.rawData);
    if (!certSpki.equals(key.spkiDer)) throw invalid('the private key does not belong to the certificate');
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca) throw invalid('the certificate is not a CA certificate (basicConstraints CA:TRUE)');
    const selfSigned = cert.subject === cert.issuer && (await cert.verify({ signatureOnly: true }).catch(() => false));
    const now = this.now();
    let state: StoredState;
    if (selfSigned) {
      const interType = req.keyType ?? this.opts.keyType ?? 'ecdsa-p256';
      const rootKey = await importSigningKey(key.pem, key.keyType);
      const inter = await this.makeIntermediate(cert, rootKey, key.keyType, interType, now);
      state = {
        v: 1,
        keyType: interType,
        imported: true,
        createdAt: now.toISOString(),
        keyId: this.box.keyId,
        root: { certPem: cert.toString('pem') + '\n', key: this.box.sealString(key.pem, ROOT_AAD) },
        intermediate: { certPem: inter.certPem, key: this.box.sealString(inter.keyPem, INTER_AAD) },
      };
    } else {
      const chain = splitPems(req.chainPem ?? '').map(parseCert);
      const root = chain.find((c) => c.subject === c.issuer);
      if (!root) throw invalid('an intermediate needs chainPem up to and including its self-signed root');
      const ok = await verifyChain(cert, chain);
      if (!ok) throw invalid('the certificate does not chain to the root given in chainPem');
      state = {
        v: 1,
        keyType: key.keyType,
        imported: true,
        createdAt: now.toISOString(),
        keyId: this.box.keyId,
        root: { certPem: root.toString('pem') + '\n' },
        intermediate: { certPem: cert.toString('pem') + '\n', key: this.box.sealString(key.pem, INTER_AAD) },
      };
    }
    const cur = await this.store.get(CA_STATE_KEY);
    if (cur && !req.force)
      throw new PorticoError(ErrorCodes.PKI_CONFLICT, 'a cluster CA already exists; import with force to replace it', 409);
    const written = await this.store.cas(CA_STATE_KEY, cur?.revision ?? 0, JSON.stringify(state));
    if (!written) throw new PorticoError(ErrorCodes.PKI_CONFLICT, 'the cluster CA changed while importing; try again', 409);
    this.signer = undefined;
    this.log.info({ imported: true, root: selfSigned ? 'root' : 'intermediate', keyType: state.keyType }, 'cluster CA imported');
    return this.describe(await this.ensure());
  }

  /** Issue a leaf with a new key. */
  async issue(req: IssueRequest): Promise<IssuedCertificate> {
    const hosts = checkHosts(req.hosts ?? [], { allowWildcards: true });
    const ips = checkIps(req.ips ?? []);
    if (hosts.length + ips.length === 0) throw invalid('a certificate needs at least one host or IP');
    const keyType = req.keyType ?? this.opts.leafKeyType ?? 'ecdsa-p256';
    if (!isKeyType(keyType)) throw invalid(`unknown key type "${String(keyType)}"`);
    const s = await this.ensure();
    const key = await generateKey(keyType);
    const leaf = await this.buildLeaf(s, {
      spkiDer: key.spkiDer,
      keyType,
      hosts,
      ips,
      cn: req.cn,
      names: req.names,
      usage: req.usage ?? 'server',
      ttlDays: req.ttlDays,
      source: 'issue',
    });
    return {
      certPem: leaf.certPem,
      chainPem: s.chainPem,
      keyPem: key.privateKeyPem,
      serial: leaf.serial,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
    };
  }

  /** Sign a caller's CSR: its signature must verify, it must not ask for a CA, and its names must pass `policy`. */
  async sign(csrPem: string, policy: SignPolicy = {}): Promise<SignedCertificate> {
    const p: SignPolicy = { ...this.opts.policy, ...policy };
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw invalid(`not a PKCS#10 certificate request: ${(err as Error).message}`);
    }
    if (!(await csr.verify().catch(() => false))) throw policyError('the CSR signature does not verify');
    const spkiDer = Buffer.from(csr.publicKey.rawData);
    const keyType = keyTypeOf(createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }));
    let dns: string[] = [];
    let ips: string[] = [];
    for (const ext of csr.extensions) {
      if (ext.type === '2.5.29.19') {
        const bc = new x509.BasicConstraintsExtension(ext.rawData);
        if (bc.ca) throw policyError('the CSR asks for a CA certificate (basicConstraints CA:TRUE); this CA signs leaves only');
      } else if (ext.type === '2.5.29.15') {
        const ku = new x509.KeyUsagesExtension(ext.rawData);
        if (ku.usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign))
          throw policyError('the CSR asks for keyCertSign or cRLSign');
      } else if (ext.type === '2.5.29.17') {
        const san = new x509.SubjectAlternativeNameExtension(ext.rawData);
        for (const n of san.names.toJSON()) {
          if (n.type === 'dns') dns.push(n.value.toLowerCase());
          else if (n.type === 'ip') ips.push(n.value);
          else throw policyError(`the CSR asks for a ${n.type} name (${n.value}); only DNS names and IPs are signed`);
        }
      }
    }
    const cn = csr.subjectName.getField('CN')[0];
    if (p.hosts) {
      dns = p.hosts.filter((h) => net.isIP(h) === 0).map((h) => h.toLowerCase());
      ips = p.hosts.filter((h) => net.isIP(h) !== 0);
    } else if (dns.length + ips.length === 0 && cn) {
      if (net.isIP(cn)) ips.push(cn);
      else dns.push(cn.toLowerCase());
    }
    const hosts = checkHosts(dns, p);
    if (ips.length > 0 && p.allowIps === false) throw policyError('IP names are not allowed by policy');
    checkIps(ips);
    if (hosts.length + ips.length === 0) throw policyError('the CSR names no host or IP');
    const s = await this.ensure();
    const leaf = await this.buildLeaf(s, { spkiDer, keyType, hosts, ips, cn, usage: p.usage ?? 'both', ttlDays: p.ttlDays, source: 'csr' });
    return {
      certPem: leaf.certPem,
      chainPem: s.chainPem,
      serial: leaf.serial,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      hosts,
      ips,
    };
  }

  /** Every certificate this CA issued, by serial. */
  async list(): Promise<CertRecord[]> {
    const entries = await this.store.list(ISSUED_PREFIX);
    return entries.map((e) => JSON.parse(e.value.toString('utf8')) as CertRecord);
  }

  /**
   * Forget certificates that expired more than `graceDays` ago (default 30): an expired certificate is
   * invalid anyway, and RFC 5280 §5.1.2.6 lets a CRL drop it after expiry. Revoked ones among them leave
   * the CRL, which is regenerated. Run under a store lock with a fencing token so that one instance of
   * those sharing the store does it. Resolves how many records were removed (0 when another holds the lock).
   */
  async prune(opts: { graceDays?: number; owner?: string } = {}): Promise<number> {
    const lock = await tryLock(this.store, PRUNE_LOCK_KEY, { ttlMs: 60_000, owner: opts.owner ?? 'pki-prune' });
    if (!lock) return 0;
    try {
      const cutoff = this.now().getTime() - (opts.graceDays ?? 30) * DAY_MS;
      let removed = 0;
      let revokedRemoved = false;
      for (const e of await this.store.list(ISSUED_PREFIX)) {
        if (lock.signal.aborted) break;
        let rec: CertRecord;
        try {
          rec = JSON.parse(e.value.toString('utf8')) as CertRecord;
        } catch {
          continue;
        }
        if (Date.parse(rec.notAfter) >= cutoff) continue;
        if (await this.store.delete(e.key, e.revision)) {
          removed++;
          if (rec.revoked) revokedRemoved = true;
        }
      }
      if (revokedRemoved) await this.regenerateCrl();
      if (removed > 0) this.log.info({ removed, graceDays: opts.graceDays ?? 30 }, 'expired certificate records pruned');
      return removed;
    } finally {
      await lock.release();
    }
  }

  async get(serial: string): Promise<CertRecord | undefined> {
    const e = await this.store.get(ISSUED_PREFIX + normalizeSerial(serial));
    return e ? (JSON.parse(e.value.toString('utf8')) as CertRecord) : undefined;
  }

  /** Revoke a certificate this CA issued and regenerate the CRL. Revoking twice keeps the first revocation. */
  async revoke(serial: string, reason: RevocationReason = 'unspecified'): Promise<CertRecord> {
    if (!(reason in x509.X509CrlReason) || typeof x509.X509CrlReason[reason] !== 'number')
      throw invalid(`unknown revocation reason "${reason}"`);
    const key = ISSUED_PREFIX + normalizeSerial(serial);
    for (let attempt = 0; attempt < 10; attempt++) {
      const e = await this.store.get(key);
      if (!e) throw new PorticoError(ErrorCodes.PKI_NOT_FOUND, `no certificate with serial ${serial} was issued by this CA`, 404);
      const rec = JSON.parse(e.value.toString('utf8')) as CertRecord;
      if (rec.revoked) {
        await this.regenerateCrl();
        return rec;
      }
      rec.revoked = { at: this.now().toISOString(), reason };
      if (await this.store.cas(key, e.revision, JSON.stringify(rec))) {
        this.log.info({ serial: rec.serial, reason, hosts: rec.hosts }, 'certificate revoked');
        await this.regenerateCrl();
        return rec;
      }
    }
    throw new PorticoError(ErrorCodes.PKI_CONFLICT, `serial ${serial} kept changing while revoking; try again`, 409);
  }

  async crlPem(): Promise<string> {
    const e = await this.store.get(CRL_KEY);
    if (e) {
      const stored = JSON.parse(e.value.toString('utf8')) as { pem: string; nextUpdate: string; ca: number };
      const s = await this.ensure();
      // Regenerate when a day from stale, or when the CA changed since (an import).
      if (Date.parse(stored.nextUpdate) - this.now().getTime() > DAY_MS && stored.ca === s.revision) return stored.pem;
    }
    return this.regenerateCrl();
  }

  async crlDer(): Promise<Buffer> {
    const pem = await this.crlPem();
    return Buffer.from(new x509.X509Crl(pem).rawData);
  }

  /** Build, sign and store the CRL from the revoked records; written by CAS so a concurrent revocation is not lost. */
  async regenerateCrl(): Promise<string> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const before = await this.store.get(CRL_KEY);
      const s = await this.ensure();
      const revoked = (await this.list()).filter((r) => r.revoked);
      const thisUpdate = this.now();
      const crl = await x509.X509CrlGenerator.create({
        issuer: s.cert.subjectName,
        thisUpdate,
        nextUpdate: new Date(thisUpdate.getTime() + 7 * DAY_MS),
        signingAlgorithm: signingAlgorithm(s.keyType),
        signingKey: s.key,
        extensions: [new x509.AuthorityKeyIdentifierExtension(s.skid)],
        entries: revoked.map((r) => {
          const reason = r.revoked!.reason;
          return {
            serialNumber: r.serial,
            revocationDate: new Date(r.revoked!.at),
            ...(reason !== 'unspecified' ? { reason: x509.X509CrlReason[reason] } : {}),
          };
        }),
      });
      const pem = toPem(crl.rawData, 'X509 CRL'); // openssl wants this label
      const value = JSON.stringify({
        pem,
        nextUpdate: new Date(thisUpdate.getTime() + 7 * DAY_MS).toISOString(),
        ca: s.revision,
        count: revoked.length,
      });
      if (await this.store.cas(CRL_KEY, before?.revision ?? 0, value)) return pem;
    }
    throw new PorticoError(ErrorCodes.PKI_CONFLICT, 'the CRL kept changing while regenerating it; try again', 409);
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  // -------------------------------------------------------------------------------------------------

  /** The loaded signer; creates the CA (by CAS) if the store has none. */
  private async ensure(keyType?: KeyType): Promise<Signer> {
    if (this.signer) return this.signer;
    this.startWatch();
    this.loading ??= this.load(keyType).finally(() => (this.loading = undefined));
    const s = await this.loading;
    this.signer = s;
    return s;
  }

  private startWatch(): void {
    if (this.watch) return;
    this.watch = this.store.watch(CA_PREFIX, (ev) => {
      const rev =
        ev.type === 'resync' ? ev.entries.find((e) => e.key === CA_STATE_KEY)?.revision : ev.type === 'put' ? ev.entry.revision : 0;
      if (ev.type !== 'resync' && ev.key !== CA_STATE_KEY) return;
      if (this.signer && this.signer.revision !== rev) {
        this.log.info({ revision: rev }, 'cluster CA changed in the store; reloading');
        this.signer = undefined;
      }
    });
  }

  private async load(keyType?: KeyType): Promise<Signer> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const e = await this.store.get(CA_STATE_KEY);
      if (e) return this.unseal(JSON.parse(e.value.toString('utf8')) as StoredState, e.revision);
      const state = await this.create(keyType ?? this.opts.keyType ?? 'ecdsa-p256');
      const written = await this.store.cas(CA_STATE_KEY, 0, JSON.stringify(state));
      if (written) {
        this.createdByUs.add(state);
        this.log.info({ keyType: state.keyType, keyId: state.keyId }, 'cluster CA created');
        return this.unseal(state, written.revision);
      }
      // Another instance created it first: use theirs.
    }
    throw new PorticoError(ErrorCodes.PKI_CONFLICT, 'could not load or create the cluster CA');
  }

  private async unseal(state: StoredState, revision: number): Promise<Signer> {
    const keyPem = this.box.openString(state.intermediate.key, INTER_AAD);
    const key = await importSigningKey(keyPem, state.keyType);
    const cert = parseCert(state.intermediate.certPem);
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    // An imported intermediate without a subject key id: derive it (RFC 5280 method 1), as our own are.
    const skid = ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey)).keyId;
    return { revision, state, cert, key, keyType: state.keyType, skid, rootPem: state.root.certPem, chainPem: state.intermediate.certPem };
  }

  private async create(keyType: KeyType): Promise<StoredState> {
    const now = this.now();
    const org = this.opts.organization ?? 'Portico';
    const rootKey = await generateKey(keyType);
    const rootSigning = await importSigningKey(rootKey.privateKeyPem, keyType);
    const rootName: x509.JsonName = [{ O: [org] }, { CN: [`${org} Cluster Root CA`] }];
    const rootSki = await x509.SubjectKeyIdentifierExtension.create(rootKey.spkiDer);
    const root = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: rootName,
      issuer: rootName,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 10 * 365 * DAY_MS),
      publicKey: rootKey.spkiDer,
      signingKey: rootSigning,
      signingAlgorithm: signingAlgorithm(keyType),
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        rootSki,
        new x509.AuthorityKeyIdentifierExtension(rootSki.keyId),
      ],
    });
    const inter = await this.makeIntermediate(root, rootSigning, keyType, keyType, now);
    return {
      v: 1,
      keyType,
      imported: false,
      createdAt: now.toISOString(),
      keyId: this.box.keyId,
      root: { certPem: root.toString('pem') + '\n', key: this.box.sealString(rootKey.privateKeyPem, ROOT_AAD) },
      intermediate: { certPem: inter.certPem, key: this.box.sealString(inter.keyPem, INTER_AAD) },
    };
  }

  private async makeIntermediate(
    root: x509.X509Certificate,
    rootKey: CryptoKey,
    rootType: KeyType,
    keyType: KeyType,
    now: Date,
  ): Promise<{ certPem: string; keyPem: string }> {
    const org = this.opts.organization ?? 'Portico';
    const k = await generateKey(keyType);
    const rootSki =
      root.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ??
      (await x509.SubjectKeyIdentifierExtension.create(root.publicKey)).keyId;
    const notAfter = Math.min(now.getTime() + 5 * 365 * DAY_MS, root.notAfter.getTime());
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: [{ O: [org] }, { CN: [`${org} Cluster Intermediate CA`] }],
      issuer: root.subjectName,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(notAfter),
      publicKey: k.spkiDer,
      signingKey: rootKey,
      signingAlgorithm: signingAlgorithm(rootType),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(k.spkiDer),
        new x509.AuthorityKeyIdentifierExtension(rootSki),
      ],
    });
    return { certPem: cert.toString('pem') + '\n', keyPem: k.privateKeyPem };
  }

  private async buildLeaf(
    s: Signer,
    r: {
      spkiDer: Buffer;
      keyType: KeyType;
      hosts: string[];
      ips: string[];
      cn?: string | undefined;
      names?: SubjectNames | undefined;
      usage: Usage;
      ttlDays?: number | undefined;
      source: CertRecord['source'];
    },
  ): Promise<{ certPem: string; serial: string; notBefore: Date; notAfter: Date }> {
    const ttlDays = r.ttlDays ?? this.opts.leafTtlDays ?? 90;
    if (!(ttlDays > 0)) throw invalid(`ttlDays must be positive, got ${ttlDays}`);
    const now = this.now();
    const ttlMs = ttlDays * DAY_MS;
    // Back-date a little for clock skew, but never by more than a tenth of a short lifetime.
    const notBefore = new Date(now.getTime() - Math.min(60_000, Math.floor(ttlMs / 10)));
    const notAfter = new Date(Math.min(now.getTime() + ttlMs, s.cert.notAfter.getTime()));
    const serial = newSerial();
    const cn = r.cn ?? r.hosts[0] ?? r.ips[0];
    const subject: x509.JsonName = [];
    for (const k of ['C', 'ST', 'L', 'O', 'OU'] as const) {
      const v = r.names?.[k];
      if (v) subject.push({ [k]: [v] });
    }
    if (cn && cn.length <= 64) subject.push({ CN: [cn] });
    const rsa = r.keyType.startsWith('rsa');
    const eku: string[] = [];
    if (r.usage !== 'client') eku.push(x509.ExtendedKeyUsage.serverAuth);
    if (r.usage !== 'server') eku.push(x509.ExtendedKeyUsage.clientAuth);
    const sans: x509.JsonGeneralName[] = [
      ...r.hosts.map((value) => ({ type: 'dns' as const, value })),
      ...r.ips.map((value) => ({ type: 'ip' as const, value })),
    ];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0), true),
      new x509.ExtendedKeyUsageExtension(eku),
      await x509.SubjectKeyIdentifierExtension.create(r.spkiDer),
      new x509.AuthorityKeyIdentifierExtension(s.skid),
      // Critical when the subject is empty (RFC 5280 4.2.1.6).
      new x509.SubjectAlternativeNameExtension(sans, subject.length === 0),
    ];
    if (this.opts.crlUrl) extensions.push(new x509.CRLDistributionPointsExtension([this.opts.crlUrl]));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject,
      issuer: s.cert.subjectName,
      notBefore,
      notAfter,
      publicKey: r.spkiDer,
      signingKey: s.key,
      signingAlgorithm: signingAlgorithm(s.keyType),
      extensions,
    });
    const certPem = cert.toString('pem') + '\n';
    const rec: CertRecord = {
      serial,
      hosts: r.hosts,
      ips: r.ips,
      usage: r.usage,
      keyType: r.keyType,
      notBefore: notBefore.toISOString(),
      notAfter: notAfter.toISOString(),
      issuedAt: now.toISOString(),
      source: r.source,
      certPem,
    };
    if (cn) rec.cn = cn;
    await this.store.put(ISSUED_PREFIX + serial, JSON.stringify(rec));
    this.log.info(
      { serial, hosts: r.hosts, ips: r.ips, usage: r.usage, notAfter: notAfter.toISOString(), source: r.source },
      'certificate issued',
    );
    return { certPem, serial, notBefore, notAfter };
  }

  private describe(s: Signer): CaInfo {
    return {
      rootPem: s.rootPem,
      intermediatePem: s.chainPem,
      keyType: s.keyType,
      imported: s.state.imported,
      createdAt: s.state.createdAt,
      root: summary(s.rootPem),
      intermediate: summary(s.chainPem),
      keyId: s.state.keyId,
    };
  }
}

// ---------------------------------------------------------------------------------------------------

function invalid(message: string): PorticoError {
  return new PorticoError(ErrorCodes.PKI_INVALID_REQUEST, message, 400);
}

function policyError(message: string): PorticoError {
  return new PorticoError(ErrorCodes.PKI_POLICY, message, 400);
}

/** Serials compare as lower-case hex without separators or leading zeros (`0A:1b` = `a1b`). */
export function normalizeSerial(serial: string): string {
  const s = serial
    .replace(/:/g, '')
    .toLowerCase()
    .replace(/^0+(?=.)/, '');
  if (!/^[0-9a-f]{1,40}$/.test(s)) throw invalid(`"${serial}" is not a hex serial number`);
  return s;
}

function checkHosts(hosts: string[], p: Pick<SignPolicy, 'allowedSuffixes' | 'allowWildcards'>): string[] {
  const out: string[] = [];
  for (const raw of hosts) {
    if (typeof raw !== 'string') throw invalid('hosts must be strings');
    const h = raw.toLowerCase().replace(/\.$/, '');
    const wildcard = h.startsWith('*.');
    const base = wildcard ? h.slice(2) : h;
    if (!isValidDnsName(base)) throw policyError(`"${raw}" is not a valid DNS name`);
    if (wildcard && p.allowWildcards === false) throw policyError(`wildcard "${raw}" is not allowed by policy`);
    const suffixes = p.allowedSuffixes;
    if (
      suffixes &&
      suffixes.length > 0 &&
      !suffixes.some((s) => {
        const x = s.toLowerCase().replace(/^\.|\.$/g, '');
        return base === x || base.endsWith(`.${x}`);
      })
    ) {
      throw policyError(`"${raw}" is outside the allowed names (${suffixes.join(', ')})`);
    }
    if (!out.includes(h)) out.push(h);
  }
  return out;
}

function checkIps(ips: string[]): string[] {
  for (const ip of ips) if (typeof ip !== 'string' || net.isIP(ip) === 0) throw policyError(`"${String(ip)}" is not an IP address`);
  return [...new Set(ips)];
}

function parseCert(pem: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (err) {
    throw invalid(`not an X.509 certificate: ${(err as Error).message}`);
  }
}

export function splitPems(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

async function verifyChain(cert: x509.X509Certificate, chain: x509.X509Certificate[]): Promise<boolean> {
  let cur = cert;
  for (let depth = 0; depth < 8; depth++) {
    if (cur.subject === cur.issuer) return cur.verify({ signatureOnly: true }).catch(() => false);
    const issuer = chain.find((c) => c.subject === cur.issuer);
    if (!issuer || !(await cur.verify({ publicKey: issuer.publicKey, signatureOnly: true }).catch(() => false))) return false;
    cur = issuer;
  }
  return false;
}

function summary(pem: string): CertSummary {
  const c = new NodeX509(pem);
  return {
    subject: c.subject.replace(/\n/g, ', '),
    serial: c.serialNumber.toLowerCase(),
    notBefore: new Date(c.validFrom).toISOString(),
    notAfter: new Date(c.validTo).toISOString(),
    fingerprint256: c.fingerprint256,
  };
}

export { toPem };
