/**
 * Secrets: values sealed at rest (AES-256-GCM, see crypto.ts) under `portico/secrets/<path>`, and their
 * file-based delivery to a task the way Marathon's app JSON asks for it:
 *
 *   "secrets":   { "pw": { "source": "db/password" } }
 *   "env":       { "DB_PW": { "secret": "pw" } }
 *   "container": { "volumes": [ { "containerPath": "path/to/db/password", "secret": "pw" } ] }
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import type { Store } from '../store/types.js';
import type { SealedBox } from './crypto.js';

export const SECRETS_PREFIX = 'portico/secrets/';

/** `a/b-c/d.e`: segments of [A-Za-z0-9._-], no `.` or `..` segments, at most 512 characters. */
export function checkSecretPath(p: string): string {
  const ok =
    typeof p === 'string' &&
    p.length > 0 &&
    p.length <= 512 &&
    p.split('/').every((s) => /^[A-Za-z0-9._-]+$/.test(s) && s !== '.' && s !== '..');
  if (!ok)
    throw new PorticoError(
      ErrorCodes.PKI_INVALID_REQUEST,
      `bad secret path ${JSON.stringify(p)}: use segments of letters, digits, ".", "_", "-" separated by "/"`,
      400,
    );
  return p;
}

export class SecretStore {
  constructor(
    private readonly store: Store,
    private readonly box: SealedBox,
  ) {}

  async put(p: string, value: Buffer | string): Promise<void> {
    const key = SECRETS_PREFIX + checkSecretPath(p);
    await this.store.put(key, this.box.seal(value, key));
  }

  async get(p: string): Promise<Buffer | undefined> {
    const key = SECRETS_PREFIX + checkSecretPath(p);
    const e = await this.store.get(key);
    return e ? this.box.open(e.value, key) : undefined;
  }

  /** True if there was such a secret. */
  async delete(p: string): Promise<boolean> {
    return this.store.delete(SECRETS_PREFIX + checkSecretPath(p));
  }

  /** Paths (not values) under `prefix`, sorted. */
  async list(prefix = ''): Promise<string[]> {
    const entries = await this.store.list(SECRETS_PREFIX + prefix);
    return entries.map((e) => e.key.slice(SECRETS_PREFIX.length));
  }
}

/** The parts of a Marathon app definition that carry secrets. Anything else in it is ignored. */
export interface MarathonAppJson {
  id?: string;
  env?: Record<string, string | { secret: string }>;
  secrets?: Record<string, { source: string }>;
  container?: { volumes?: Array<{ containerPath?: string; secret?: string; [k: string]: unknown }>; [k: string]: unknown };
  [k: string]: unknown;
}

export interface WrittenSecrets {
  /** Absolute paths of the files written (0600). */
  files: string[];
  /** Environment variables whose value comes from a secret: name → value. */
  env: Record<string, string>;
}

/**
 * Materialise `app`'s secret volumes as 0600 files under `taskDir` (directories 0700), and resolve its
 * env secrets. All or nothing: if any secret is missing or a path escapes `taskDir`, nothing is left
 * written.
 */
export async function writeSecretFiles(app: MarathonAppJson, taskDir: string, secrets: Pick<SecretStore, 'get'>): Promise<WrittenSecrets> {
  const root = path.resolve(taskDir);
  const declared = app.secrets ?? {};
  const resolve = async (name: string, what: string): Promise<Buffer> => {
    const ref = declared[name];
    if (!ref || typeof ref.source !== 'string') throw bad(`${what} refers to secret "${name}", which app.secrets does not declare`);
    const value = await secrets.get(ref.source);
    if (value === undefined)
      throw new PorticoError(ErrorCodes.PKI_NOT_FOUND, `${what}: secret "${name}" (source ${ref.source}) is not in the secret store`, 404);
    return value;
  };

  // Resolve and check everything first, then write.
  const plan: Array<{ file: string; value: Buffer }> = [];
  for (const [i, vol] of (app.container?.volumes ?? []).entries()) {
    if (vol.secret === undefined) continue;
    const cp = vol.containerPath;
    if (typeof cp !== 'string' || cp === '' || path.isAbsolute(cp))
      throw bad(`container.volumes[${i}].containerPath must be a relative path, got ${JSON.stringify(cp)}`);
    const file = path.resolve(root, cp);
    if (!file.startsWith(root + path.sep))
      throw bad(`container.volumes[${i}].containerPath ${JSON.stringify(cp)} escapes the task directory`);
    plan.push({ file, value: await resolve(vol.secret, `container.volumes[${i}]`) });
  }
  const env: Record<string, string> = {};
  for (const [name, v] of Object.entries(app.env ?? {})) {
    if (typeof v === 'object' && v !== null && typeof v.secret === 'string')
      env[name] = (await resolve(v.secret, `env.${name}`)).toString('utf8');
  }

  const written: string[] = [];
  try {
    for (const { file, value } of plan) {
      await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      // A symlink planted at the path must not redirect the write outside the task directory.
      const real = await fsp.realpath(path.dirname(file));
      const realRoot = await fsp.realpath(root);
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) throw bad(`${file} resolves outside the task directory`);
      await fsp.rm(file, { force: true });
      const fh = await fsp.open(file, 'wx', 0o600);
      try {
        await fh.writeFile(value);
        await fh.chmod(0o600);
      } finally {
        await fh.close();
      }
      written.push(file);
    }
  } catch (err) {
    await Promise.all(written.map((f) => fsp.rm(f, { force: true })));
    throw err;
  }
  return { files: written, env };
}

function bad(message: string): PorticoError {
  return new PorticoError(ErrorCodes.PKI_INVALID_REQUEST, message, 400);
}
