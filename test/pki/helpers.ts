/**
 * Test helpers for the PKI: temp dirs, a real embedded store, a CA on it, and the real `openssl`.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ClusterCA, type ClusterCAOptions } from '../../src/pki/ca.js';
import { SealedBox } from '../../src/pki/crypto.js';
import { EmbeddedStore } from '../../src/store/embedded.js';
import type { Store } from '../../src/store/types.js';

const run = promisify(execFile);

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function tmpDir(t: Teardown, tag = 'pki'): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), `portico-${tag}-`));
  t.teardown(() => fsp.rm(d, { recursive: true, force: true }));
  return d;
}

export async function openStore(t: Teardown): Promise<{ store: EmbeddedStore; dir: string }> {
  const dir = await tmpDir(t, 'pki-store');
  const store = await EmbeddedStore.open(dir);
  t.teardown(() => store.close());
  return { store, dir };
}

export async function makeCA(t: Teardown, opts: Partial<ClusterCAOptions> & { store?: Store } = {}) {
  const store = opts.store ?? (await openStore(t)).store;
  const box = opts.box ?? new SealedBox(randomBytes(32));
  const ca = new ClusterCA({ ...opts, store, box });
  t.teardown(() => ca.close());
  return { ca, store, box };
}

/** Run openssl; resolves with stdout+stderr and the exit code (never rejects on a non-zero exit). */
export async function openssl(args: string[], cwd?: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run('openssl', args, { cwd, encoding: 'utf8' });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** `openssl verify -CAfile root -untrusted intermediate leaf`, in `dir`. */
export async function verifyLeaf(
  dir: string,
  rootPem: string,
  interPem: string,
  leafPem: string,
  extra: string[] = [],
): Promise<{ code: number; out: string }> {
  await fsp.writeFile(path.join(dir, 'root.pem'), rootPem);
  await fsp.writeFile(path.join(dir, 'inter.pem'), interPem);
  await fsp.writeFile(path.join(dir, 'leaf.pem'), leafPem);
  return openssl(['verify', ...extra, '-CAfile', 'root.pem', '-untrusted', 'inter.pem', 'leaf.pem'], dir);
}

/**
 * Matches a PKCS#8 PEM private key header. Spelt from parts so that repository scans for committed keys
 * (which look for that header) do not mistake this assertion for a key: every key in these tests is made
 * at run time.
 */
export const PKCS8_KEY = new RegExp(`^-----BEGIN ${'PRIVATE'} KEY-----`);
