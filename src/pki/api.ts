/**
 * The PKI's admin api resources.
 *
 * The DC/OS CA api (CFSSL-derived), answered in CloudFlare's envelope
 * `{"success":bool,"result":…,"errors":[{code,message}],"messages":[]}`, errors included:
 *   POST /ca/api/v2/newcert   {"request":{"hosts":[…],"CN":"…","names":[{C,ST,L,O,OU}],"key":{"algo","size"}}}
 *   POST /ca/api/v2/newkey    the same → a CSR and its key (nothing is signed)
 *   POST /ca/api/v2/sign      {"certificate_request":PEM,"hosts"?:[…]}
 *   POST /ca/api/v2/info      unauthenticated: the root certificate
 *   GET  /ca/dcos-ca.crt      unauthenticated: the root, PEM
 * Auth is this api's bearer token (DC/OS used `token=<JWT>` through Admin Router).
 *
 * Ours, plain JSON: `/v1/ca` (show, init, import), `/v1/certs` (list, issue, sign, revoke), `/v1/crl`
 * (unauthenticated), `/v1/secrets/:path`. The router has no wildcard segment, so a secret path with
 * slashes is sent as one URL-encoded segment (`/v1/secrets/db%2Fpassword`).
 */
import net from 'node:net';
import { Reply } from '../api/router.js';
import type { RequestContext, RouteHandler, RouteRegistrar } from '../api/types.js';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import type { AutoCertManager } from './auto.js';
import type { ClusterCA, IssueRequest, RevocationReason, SubjectNames, Usage } from './ca.js';
import { generateKey, importSigningKey, isKeyType, signingAlgorithm, x509, type KeyType } from './crypto.js';
import type { SecretStore } from './secrets.js';

export interface PkiServices {
  ca: ClusterCA;
  auto?: AutoCertManager;
  secrets: SecretStore;
}

type Route = RouteRegistrar;

const PEM_FILE = 'application/x-pem-file';

/** Register every PKI route. Pass a bound `route` (`(m, p, h, o) => api.route(m, p, h, o)`). */
export function registerPkiApi(route: Route, pki: PkiServices): void {
  const { ca, secrets } = pki;

  // --- DC/OS CA api --------------------------------------------------------------------------------
  const cfssl =
    (handler: (ctx: RequestContext) => Promise<unknown>): RouteHandler =>
    async (ctx) => {
      try {
        return Reply.json(200, { success: true, result: await handler(ctx), errors: [], messages: [] });
      } catch (err) {
        if (!(err instanceof PorticoError) || err.status >= 500) throw err; // the server logs it; 500 as usual
        return Reply.json(err.status, { success: false, result: null, errors: [{ code: err.status, message: err.message }], messages: [] });
      }
    };

  route(
    'POST',
    '/ca/api/v2/newcert',
    cfssl(async (ctx) => {
      const r = cfsslRequest(await ctx.json());
      const leaf = await ca.issue(r);
      return { certificate: leaf.certPem, private_key: leaf.keyPem, certificate_chain: leaf.chainPem, serial: leaf.serial };
    }),
    { doc: { summary: 'Issue a certificate and a new key (DC/OS CA api)', tags: ['ca'] } },
  );

  route(
    'POST',
    '/ca/api/v2/newkey',
    cfssl(async (ctx) => {
      const r = cfsslRequest(await ctx.json());
      return newKeyAndCsr(r);
    }),
    { doc: { summary: 'Generate a key and a CSR for it (DC/OS CA api)', tags: ['ca'] } },
  );

  route(
    'POST',
    '/ca/api/v2/sign',
    cfssl(async (ctx) => {
      const body = obj(await ctx.json());
      const csr = body.certificate_request;
      if (typeof csr !== 'string') throw bad('certificate_request (a PEM CSR) is required');
      const hosts = body.hosts === undefined ? undefined : strings(body.hosts, 'hosts');
      const signed = await ca.sign(csr, hosts ? { hosts } : {});
      return { certificate: signed.certPem, certificate_chain: signed.chainPem, serial: signed.serial };
    }),
    { doc: { summary: 'Sign a CSR (DC/OS CA api)', tags: ['ca'] } },
  );

  route(
    'POST',
    '/ca/api/v2/info',
    cfssl(async () => {
      const info = await ca.info();
      return {
        certificate: info.rootPem,
        usages: ['signing', 'key encipherment', 'server auth', 'client auth'],
        expiry: info.root.notAfter,
      };
    }),
    { auth: false, doc: { summary: 'The cluster CA certificate (DC/OS CA api)', tags: ['ca'] } },
  );

  route('GET', '/ca/dcos-ca.crt', async () => Reply.raw(200, PEM_FILE, await ca.rootPem()), {
    auth: false,
    doc: {
      summary: 'The cluster root CA certificate, PEM',
      tags: ['ca'],
      responses: { 200: { description: 'PEM', contentType: PEM_FILE } },
    },
  });

  // --- ours ----------------------------------------------------------------------------------------
  route('GET', '/v1/ca', async () => ca.info(), { doc: { summary: 'The cluster CA: root, intermediate, key type', tags: ['ca'] } });

  route(
    'POST',
    '/v1/ca/init',
    async (ctx) => {
      const body = ctx.req.headers['content-length'] === '0' ? {} : obj(await ctx.json().catch(() => ({})));
      const keyType = body.keyType;
      if (keyType !== undefined && !isKeyType(keyType))
        throw bad(`keyType must be one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096`);
      return ca.init(keyType ? { keyType } : {});
    },
    { doc: { summary: 'Create the cluster CA if there is none', tags: ['ca'] } },
  );

  route(
    'POST',
    '/v1/ca/import',
    async (ctx) => {
      const body = obj(await ctx.json());
      if (typeof body.certPem !== 'string' || typeof body.keyPem !== 'string') throw bad('certPem and keyPem are required');
      return ca.import({
        certPem: body.certPem,
        keyPem: body.keyPem,
        ...(typeof body.chainPem === 'string' ? { chainPem: body.chainPem } : {}),
        force: body.force === true,
        ...(isKeyType(body.keyType) ? { keyType: body.keyType } : {}),
      });
    },
    { doc: { summary: 'Import an operator CA (root or intermediate, with its key)', tags: ['ca'] } },
  );

  route(
    'GET',
    '/v1/certs',
    async () => {
      const list = await ca.list();
      return list.map((r) => ({
        serial: r.serial,
        hosts: r.hosts,
        ips: r.ips,
        cn: r.cn,
        usage: r.usage,
        source: r.source,
        notBefore: r.notBefore,
        notAfter: r.notAfter,
        revoked: r.revoked ?? null,
      }));
    },
    { doc: { summary: 'Certificates issued by the cluster CA', tags: ['certs'] } },
  );

  route(
    'POST',
    '/v1/certs',
    async (ctx) => {
      const body = obj(await ctx.json());
      const req: IssueRequest = {
        hosts: body.hosts === undefined ? [] : strings(body.hosts, 'hosts'),
        ips: body.ips === undefined ? [] : strings(body.ips, 'ips'),
      };
      if (typeof body.cn === 'string') req.cn = body.cn;
      if (body.usage !== undefined) {
        if (body.usage !== 'server' && body.usage !== 'client' && body.usage !== 'both') throw bad('usage must be server, client or both');
        req.usage = body.usage as Usage;
      }
      if (body.keyType !== undefined) {
        if (!isKeyType(body.keyType)) throw bad('unknown keyType');
        req.keyType = body.keyType;
      }
      if (body.ttlDays !== undefined) {
        if (typeof body.ttlDays !== 'number' || !(body.ttlDays > 0)) throw bad('ttlDays must be a positive number');
        req.ttlDays = body.ttlDays;
      }
      const leaf = await ca.issue(req);
      return {
        serial: leaf.serial,
        notAfter: leaf.notAfter.toISOString(),
        certPem: leaf.certPem,
        chainPem: leaf.chainPem,
        keyPem: leaf.keyPem,
      };
    },
    { doc: { summary: 'Issue a certificate with a new key (the key is in the response, and nowhere else)', tags: ['certs'] } },
  );

  route(
    'POST',
    '/v1/certs/sign',
    async (ctx) => {
      const body = obj(await ctx.json());
      if (typeof body.csr !== 'string') throw bad('csr (PEM) is required');
      const s = await ca.sign(body.csr);
      return { serial: s.serial, notAfter: s.notAfter.toISOString(), hosts: s.hosts, ips: s.ips, certPem: s.certPem, chainPem: s.chainPem };
    },
    { doc: { summary: 'Sign a CSR', tags: ['certs'] } },
  );

  route(
    'POST',
    '/v1/certs/:serial/revoke',
    async (ctx) => {
      const raw = ctx.req.headers['content-length'] === '0' ? '' : await ctx.text();
      const body = raw.trim() ? obj(JSON.parse(raw) as unknown) : {};
      const reason = body.reason ?? 'unspecified';
      if (typeof reason !== 'string' || typeof x509.X509CrlReason[reason as RevocationReason] !== 'number')
        throw bad(`unknown revocation reason ${JSON.stringify(reason)}`);
      const rec = await ca.revoke(ctx.param('serial'), reason as RevocationReason);
      return { serial: rec.serial, hosts: rec.hosts, revoked: rec.revoked };
    },
    { doc: { summary: 'Revoke a certificate; the CRL is regenerated', tags: ['certs'] } },
  );

  route(
    'GET',
    '/v1/crl',
    async (ctx) => {
      if (ctx.query.get('format') === 'pem') return Reply.raw(200, PEM_FILE, await ca.crlPem());
      return Reply.raw(200, 'application/pkix-crl', await ca.crlDer());
    },
    { auth: false, doc: { summary: 'The certificate revocation list (DER; ?format=pem for PEM)', tags: ['certs'] } },
  );

  if (pki.auto) {
    const auto = pki.auto;
    route(
      'GET',
      '/v1/certs/auto',
      async () => auto.certs().map((c) => ({ hosts: c.hosts, serial: c.serial, notAfter: c.notAfter.toISOString() })),
      { doc: { summary: 'Automatic certificates of TLS route hosts', tags: ['certs'] } },
    );
  }

  // --- secrets -------------------------------------------------------------------------------------
  route('GET', '/v1/secrets', async (ctx) => ({ paths: await secrets.list(ctx.query.get('prefix') ?? '') }), {
    doc: { summary: 'Secret paths (not values)', tags: ['secrets'] },
  });

  route(
    'PUT',
    '/v1/secrets/:path',
    async (ctx) => {
      const body = obj(await ctx.json());
      let value: Buffer;
      if (typeof body.value === 'string') value = Buffer.from(body.value, 'utf8');
      else if (typeof body.base64 === 'string') value = Buffer.from(body.base64, 'base64');
      else throw bad('send {"value": "..."} or {"base64": "..."}');
      await secrets.put(ctx.param('path'), value);
      return undefined;
    },
    { doc: { summary: 'Store a secret (path URL-encoded as one segment: db%2Fpassword)', tags: ['secrets'] } },
  );

  route(
    'GET',
    '/v1/secrets/:path',
    async (ctx) => {
      const v = await secrets.get(ctx.param('path'));
      if (v === undefined) throw new PorticoError(ErrorCodes.PKI_NOT_FOUND, `no secret at ${ctx.param('path')}`, 404);
      return { path: ctx.param('path'), value: v.toString('utf8'), base64: v.toString('base64') };
    },
    { doc: { summary: 'Read a secret', tags: ['secrets'] } },
  );

  route(
    'DELETE',
    '/v1/secrets/:path',
    async (ctx) => {
      if (!(await secrets.delete(ctx.param('path'))))
        throw new PorticoError(ErrorCodes.PKI_NOT_FOUND, `no secret at ${ctx.param('path')}`, 404);
      return undefined;
    },
    { doc: { summary: 'Delete a secret', tags: ['secrets'] } },
  );
}

// ---------------------------------------------------------------------------------------------------

/** A cfssl `{"request":{hosts,CN,names,key}}` as an IssueRequest. */
function cfsslRequest(body: unknown): IssueRequest {
  const r = obj(obj(body).request);
  const all = r.hosts === undefined ? [] : strings(r.hosts, 'request.hosts');
  const req: IssueRequest = { hosts: all.filter((h) => net.isIP(h) === 0), ips: all.filter((h) => net.isIP(h) !== 0), usage: 'both' };
  if (typeof r.CN === 'string' && r.CN) req.cn = r.CN;
  if (req.hosts.length + (req.ips?.length ?? 0) === 0 && req.cn) {
    if (net.isIP(req.cn)) req.ips = [req.cn];
    else req.hosts = [req.cn];
  }
  if (Array.isArray(r.names) && r.names.length > 0) {
    const n = obj(r.names[0]);
    const names: SubjectNames = {};
    for (const k of ['C', 'ST', 'L', 'O', 'OU'] as const) if (typeof n[k] === 'string' && n[k]) names[k] = n[k] as string;
    req.names = names;
  }
  if (r.key !== undefined) {
    const k = obj(r.key);
    const algo = k.algo ?? 'ecdsa';
    const size = k.size ?? (algo === 'rsa' ? 2048 : 256);
    const kt =
      algo === 'ecdsa'
        ? size === 384
          ? 'ecdsa-p384'
          : size === 256
            ? 'ecdsa-p256'
            : undefined
        : algo === 'rsa'
          ? `rsa-${String(size)}`
          : undefined;
    if (!isKeyType(kt)) throw bad(`unsupported key ${JSON.stringify(r.key)}: ecdsa 256/384 or rsa 2048/3072/4096`);
    req.keyType = kt;
  }
  return req;
}

async function newKeyAndCsr(r: IssueRequest): Promise<{ private_key: string; certificate_request: string }> {
  const keyType: KeyType = r.keyType ?? 'ecdsa-p256';
  const k = await generateKey(keyType);
  const priv = await importSigningKey(k.privateKeyPem, keyType);
  const { webcrypto } = await import('node:crypto');
  const pub = await webcrypto.subtle.importKey('spki', k.spkiDer, signingAlgorithm(keyType), true, ['verify']);
  const name: x509.JsonName = [];
  for (const key of ['C', 'ST', 'L', 'O', 'OU'] as const) {
    const v = r.names?.[key];
    if (v) name.push({ [key]: [v] });
  }
  const cn = r.cn ?? r.hosts[0] ?? r.ips?.[0];
  if (cn) name.push({ CN: [cn] });
  const sans: x509.JsonGeneralName[] = [
    ...r.hosts.map((value) => ({ type: 'dns' as const, value })),
    ...(r.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys: { privateKey: priv, publicKey: pub } as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'],
    signingAlgorithm: signingAlgorithm(keyType),
    extensions: sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
  });
  return { private_key: k.privateKeyPem, certificate_request: csr.toString('pem') + '\n' };
}

function obj(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected a JSON object');
  return v as Record<string, unknown>;
}

function strings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(`${what} must be an array of strings`);
  return v as string[];
}

function bad(message: string): PorticoError {
  return new PorticoError(ErrorCodes.PKI_INVALID_REQUEST, message, 400);
}
