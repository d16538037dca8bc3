/**
 * `portico ca|cert|secret …`: the PKI commands, through the admin api only.
 *
 *   portico ca show [--json]
 *   portico ca init [--key-type ecdsa-p256|ecdsa-p384|rsa-2048|rsa-3072|rsa-4096]
 *   portico ca import --cert FILE --key FILE [--chain FILE] [--force]
 *   portico cert list [--json]
 *   portico cert issue --host H[,H2…] [--ip I[,I2…]] [--cn CN] [--usage server|client|both] [--key-type T] [--ttl-days N] [--out DIR]
 *   portico cert sign req.csr [--out FILE]
 *   portico cert revoke SERIAL [--reason keyCompromise|superseded|…]
 *   portico secret put PATH (--value V | --file F)
 *   portico secret get PATH
 *   portico secret rm PATH
 *   portico secret list [--prefix P]
 *   portico secret write-files --app app.json --dir DIR [--env-out FILE]
 *
 * Repeated values go comma-separated in one flag (`--host a.example.test,b.example.test`). Key files
 * are written 0600; a key is printed only when it was asked for and no `--out` is given.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { writeSecretFiles, type MarathonAppJson } from '../pki/secrets.js';

export interface PkiCommandArgs {
  command: string;
  positional: string[];
  flags: Record<string, string | true>;
}

export interface PkiCommandContext {
  api: { url: string; token: string };
}

export const PKI_USAGE = `PKI commands:
  ca show | init [--key-type T] | import --cert F --key F [--chain F] [--force]
  cert list | issue --host H[,H…] [--ip I[,I…]] [--cn CN] [--usage server|client|both] [--key-type T] [--ttl-days N] [--out DIR]
  cert sign req.csr [--out FILE] | revoke SERIAL [--reason R]
  secret put PATH (--value V | --file F) | get PATH | rm PATH | list [--prefix P]
  secret write-files --app app.json --dir DIR [--env-out FILE]
`;

class PkiUsageError extends Error {}

/** Run one PKI command. 0 ok, 1 failed (api or file error), 2 usage. */
export async function runPkiCommand(args: PkiCommandArgs, ctx: PkiCommandContext): Promise<number> {
  const api = new ApiClient(ctx.api.url, ctx.api.token);
  const out = (s: string): void => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  const sub = args.positional[0];
  const arg1 = args.positional[1];
  const str = (name: string): string | undefined => {
    const v = args.flags[name];
    if (v === true) throw new PkiUsageError(`--${name} needs a value`);
    return v;
  };
  const need = (name: string): string => {
    const v = str(name);
    if (v === undefined || v === '') throw new PkiUsageError(`--${name} is required`);
    return v;
  };
  const list = (name: string): string[] =>
    (str(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const json = args.flags.json === true;

  try {
    switch (`${args.command} ${sub ?? ''}`.trim()) {
      case 'ca show': {
        const info = (await api.call('GET', '/v1/ca')) as CaInfoJson;
        if (json) out(JSON.stringify(info, null, 2));
        else out(describeCa(info));
        return 0;
      }
      case 'ca init': {
        const keyType = str('key-type');
        const info = (await api.call('POST', '/v1/ca/init', keyType ? { keyType } : {})) as CaInfoJson & { created: boolean };
        out(`${info.created ? 'created' : 'already initialised'}: ${describeCa(info)}`);
        return 0;
      }
      case 'ca import': {
        const body: Record<string, unknown> = {
          certPem: await fsp.readFile(need('cert'), 'utf8'),
          keyPem: await fsp.readFile(need('key'), 'utf8'),
          force: isYes(args.flags.force),
        };
        const chain = str('chain');
        if (chain) body.chainPem = await fsp.readFile(chain, 'utf8');
        const info = (await api.call('POST', '/v1/ca/import', body)) as CaInfoJson;
        out(`imported: ${describeCa(info)}`);
        return 0;
      }
      case 'cert list': {
        const certs = (await api.call('GET', '/v1/certs')) as Array<{
          serial: string;
          hosts: string[];
          ips: string[];
          notAfter: string;
          revoked: { reason: string } | null;
        }>;
        if (json) out(JSON.stringify(certs, null, 2));
        else {
          out(`${'SERIAL'.padEnd(34)} ${'NOT AFTER'.padEnd(24)} ${'REVOKED'.padEnd(14)} NAMES`);
          for (const c of certs)
            out(
              `${c.serial.padEnd(34)} ${c.notAfter.padEnd(24)} ${(c.revoked?.reason ?? '-').padEnd(14)} ${[...c.hosts, ...c.ips].join(',')}`,
            );
        }
        return 0;
      }
      case 'cert issue': {
        const hosts = list('host');
        const ips = list('ip');
        if (hosts.length + ips.length === 0) throw new PkiUsageError('cert issue needs --host (or --ip)');
        const body: Record<string, unknown> = { hosts, ips };
        if (str('cn')) body.cn = str('cn');
        if (str('usage')) body.usage = str('usage');
        if (str('key-type')) body.keyType = str('key-type');
        if (str('ttl-days')) body.ttlDays = Number(str('ttl-days'));
        const r = (await api.call('POST', '/v1/certs', body)) as {
          serial: string;
          notAfter: string;
          certPem: string;
          chainPem: string;
          keyPem: string;
        };
        const dir = str('out');
        if (dir) {
          const base = fileBase(hosts[0] ?? ips[0] ?? r.serial);
          await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
          const files = {
            cert: path.join(dir, `${base}.crt`),
            chain: path.join(dir, `${base}.chain.crt`),
            fullchain: path.join(dir, `${base}.fullchain.crt`),
            key: path.join(dir, `${base}.key`),
          };
          await writePrivate(files.key, r.keyPem);
          await fsp.writeFile(files.cert, r.certPem, { mode: 0o644 });
          await fsp.writeFile(files.chain, r.chainPem, { mode: 0o644 });
          await fsp.writeFile(files.fullchain, r.certPem + r.chainPem, { mode: 0o644 });
          out(`issued ${r.serial} (until ${r.notAfter}): ${files.cert}, ${files.fullchain}, ${files.key} (0600)`);
        } else if (json) out(JSON.stringify(r, null, 2));
        else out(r.certPem + r.chainPem + r.keyPem);
        return 0;
      }
      case 'cert sign': {
        if (!arg1) throw new PkiUsageError('cert sign needs a CSR file');
        const csr = await fsp.readFile(arg1, 'utf8');
        const r = (await api.call('POST', '/v1/certs/sign', { csr })) as { serial: string; certPem: string; chainPem: string };
        const file = str('out');
        if (file) {
          await fsp.writeFile(file, r.certPem + r.chainPem, { mode: 0o644 });
          out(`signed ${r.serial}: ${file}`);
        } else out(r.certPem + r.chainPem);
        return 0;
      }
      case 'cert revoke': {
        if (!arg1) throw new PkiUsageError('cert revoke needs a serial');
        const reason = str('reason');
        const r = (await api.call('POST', `/v1/certs/${encodeURIComponent(arg1)}/revoke`, reason ? { reason } : {})) as {
          serial: string;
          revoked: { reason: string };
        };
        out(`revoked ${r.serial} (${r.revoked.reason})`);
        return 0;
      }
      case 'secret put': {
        if (!arg1) throw new PkiUsageError('secret put needs a path');
        const value = str('value');
        const file = str('file');
        if ((value === undefined) === (file === undefined)) throw new PkiUsageError('secret put needs exactly one of --value or --file');
        const body = value !== undefined ? { value } : { base64: (await fsp.readFile(file as string)).toString('base64') };
        await api.call('PUT', secretPath(arg1), body);
        out(`stored ${arg1}`);
        return 0;
      }
      case 'secret get': {
        if (!arg1) throw new PkiUsageError('secret get needs a path');
        const r = (await api.call('GET', secretPath(arg1))) as { base64: string };
        process.stdout.write(Buffer.from(r.base64, 'base64'));
        return 0;
      }
      case 'secret rm': {
        if (!arg1) throw new PkiUsageError('secret rm needs a path');
        await api.call('DELETE', secretPath(arg1));
        out(`deleted ${arg1}`);
        return 0;
      }
      case 'secret list': {
        const prefix = str('prefix');
        const r = (await api.call('GET', `/v1/secrets${prefix ? `?prefix=${encodeURIComponent(prefix)}` : ''}`)) as { paths: string[] };
        for (const p of r.paths) out(p);
        return 0;
      }
      case 'secret write-files': {
        const app = JSON.parse(await fsp.readFile(need('app'), 'utf8')) as MarathonAppJson;
        const dir = need('dir');
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
        const reader = {
          get: async (p: string): Promise<Buffer | undefined> => {
            const r = (await api.call('GET', secretPath(p), undefined, true)) as { base64: string } | undefined;
            return r ? Buffer.from(r.base64, 'base64') : undefined;
          },
        };
        const r = await writeSecretFiles(app, dir, reader);
        for (const f of r.files) out(`wrote ${f} (0600)`);
        const envOut = str('env-out');
        const names = Object.keys(r.env);
        if (envOut) {
          await writePrivate(envOut, names.map((n) => `${n}=${shellQuote(r.env[n] as string)}\n`).join(''));
          out(`wrote ${names.length} env secret(s) to ${envOut} (0600)`);
        } else if (names.length > 0) out(`env secrets (not printed; use --env-out FILE): ${names.join(', ')}`);
        return 0;
      }
      default:
        throw new PkiUsageError(`unknown command "${[args.command, sub].filter(Boolean).join(' ')}"`);
    }
  } catch (err) {
    if (err instanceof PkiUsageError) {
      process.stderr.write(`portico: ${err.message}\n\n${PKI_USAGE}`);
      return 2;
    }
    process.stderr.write(`portico: ${(err as Error).message}\n`);
    return 1;
  }
}

// ---------------------------------------------------------------------------------------------------

interface CaInfoJson {
  keyType: string;
  imported: boolean;
  keyId: string;
  root: { subject: string; notAfter: string; fingerprint256: string };
  intermediate: { subject: string; notAfter: string };
}

function describeCa(info: CaInfoJson): string {
  return [
    `cluster CA (${info.keyType}${info.imported ? ', imported' : ''}; keys sealed under master key ${info.keyId})`,
    `  root:         ${info.root.subject} (until ${info.root.notAfter})`,
    `                SHA-256 ${info.root.fingerprint256}`,
    `  intermediate: ${info.intermediate.subject} (until ${info.intermediate.notAfter})`,
  ].join('\n');
}

class ApiClient {
  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  /** JSON in, JSON out; throws with the api's error message. `notFoundOk`: 404 resolves undefined. */
  async call(method: string, pathname: string, body?: unknown, notFoundOk = false): Promise<unknown> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.base.replace(/\/+$/, '')}${pathname}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (res.status === 404 && notFoundOk) return undefined;
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    if (!res.ok) {
      const msg = (parsed as { error?: { message?: string } } | undefined)?.error?.message ?? text;
      throw new Error(`${method} ${pathname.split('?')[0]}: HTTP ${res.status}: ${msg}`);
    }
    return parsed;
  }
}

/** The router has no wildcard segment: a secret path travels as one URL-encoded segment. */
function secretPath(p: string): string {
  return `/v1/secrets/${encodeURIComponent(p)}`;
}

function fileBase(name: string): string {
  return name.replace(/^\*\./, '_wildcard.').replace(/[^A-Za-z0-9._-]/g, '_');
}

async function writePrivate(file: string, data: string): Promise<void> {
  await fsp.rm(file, { force: true });
  await fsp.writeFile(file, data, { mode: 0o600, flag: 'wx' });
  await fsp.chmod(file, 0o600);
}

function isYes(v: string | true | undefined): boolean {
  return v === true || (typeof v === 'string' && /^(1|true|yes)$/i.test(v));
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
