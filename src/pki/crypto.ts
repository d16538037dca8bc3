/**
 * Key material for the cluster CA: key generation (node:crypto), WebCrypto handles for @peculiar/x509,
 * and the sealed box that keeps private keys and secrets encrypted at rest in the store.
 *
 * Sealed record (binary): "PKB1" | iv (12) | GCM tag (16) | ciphertext. AES-256-GCM with a random IV per
 * record, and the record's store key as additional data, so a record copied under another key does not
 * open. The master key is 32 bytes from `PORTICO_PKI_KEY` (base64) or `<dataDir>/pki-master.key` (0600).
 */
import './reflect.js';
import { createCipheriv, createDecipheriv, createHash, generateKeyPair, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { ErrorCodes, PorticoError } from '../model/errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type CryptoKey = webcrypto.CryptoKey;
export const subtle = webcrypto.subtle;

/** Key algorithms the CA issues and accepts. */
export type KeyType = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';
export const KEY_TYPES: readonly KeyType[] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'];

export function isKeyType(v: unknown): v is KeyType {
  return typeof v === 'string' && (KEY_TYPES as readonly string[]).includes(v);
}

const genKeyPair = promisify(generateKeyPair) as (
  type: string,
  opts: Record<string, unknown>,
) => Promise<{ publicKey: KeyObject; privateKey: KeyObject }>;

export interface KeyMaterial {
  /** PKCS#8 PEM. Never logged; handed out only to the caller that asked for a new key. */
  privateKeyPem: string;
  /** SubjectPublicKeyInfo, DER. */
  spkiDer: Buffer;
  keyType: KeyType;
}

/** A new key pair, generated natively. */
export async function generateKey(keyType: KeyType): Promise<KeyMaterial> {
  const kp = keyType.startsWith('ecdsa')
    ? await genKeyPair('ec', { namedCurve: keyType === 'ecdsa-p384' ? 'P-384' : 'P-256' })
    : await genKeyPair('rsa', { modulusLength: Number(keyType.slice(4)), publicExponent: 0x10001 });
  return {
    privateKeyPem: kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    spkiDer: kp.publicKey.export({ type: 'spki', format: 'der' }),
    keyType,
  };
}

/** The WebCrypto algorithm a key of this type signs with (SHA-256; SHA-384 for P-384). */
export function signingAlgorithm(keyType: KeyType): webcrypto.RsaHashedImportParams | (webcrypto.EcKeyImportParams & { hash: string }) {
  if (keyType === 'ecdsa-p256') return { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  if (keyType === 'ecdsa-p384') return { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' };
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/** Import a PKCS#8 PEM private key for signing with @peculiar/x509. */
export async function importSigningKey(pem: string, keyType: KeyType, extractable = false): Promise<CryptoKey> {
  const der = pemBody(pem, 'PRIVATE KEY');
  return subtle.importKey('pkcs8', der, signingAlgorithm(keyType), extractable, ['sign']);
}

export async function importPublicKey(spkiDer: Uint8Array, keyType: KeyType): Promise<CryptoKey> {
  return subtle.importKey('spki', spkiDer, signingAlgorithm(keyType), true, ['verify']);
}

/** The key type of a PEM private key (PKCS#8, or the traditional "EC/RSA PRIVATE KEY" forms), re-exported as PKCS#8. */
export async function normalizePrivateKey(pem: string): Promise<{ pem: string; keyType: KeyType; spkiDer: Buffer }> {
  const { createPrivateKey, createPublicKey } = await import('node:crypto');
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new PorticoError(ErrorCodes.PKI_INVALID_REQUEST, `not a usable private key: ${(err as Error).message}`, 400);
  }
  const keyType = keyTypeOf(key);
  return {
    pem: key.export({ type: 'pkcs8', format: 'pem' }) as string,
    keyType,
    spkiDer: createPublicKey(key).export({ type: 'spki', format: 'der' }),
  };
}

export function keyTypeOf(key: KeyObject): KeyType {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1' || d.namedCurve === 'P-256') return 'ecdsa-p256';
    if (d.namedCurve === 'secp384r1' || d.namedCurve === 'P-384') return 'ecdsa-p384';
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength;
    if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa-${bits}` as KeyType;
  }
  throw new PorticoError(
    ErrorCodes.PKI_POLICY,
    `unsupported key: ${key.asymmetricKeyType ?? '?'} ${d.namedCurve ?? d.modulusLength ?? ''} (want ECDSA P-256/P-384 or RSA 2048/3072/4096)`,
    400,
  );
}

export function pemBody(pem: string, label: string): Buffer {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`);
  const m = re.exec(pem);
  if (!m) throw new PorticoError(ErrorCodes.PKI_INVALID_REQUEST, `no ${label} PEM block found`, 400);
  return Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64');
}

export function toPem(der: Uint8Array | ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------------------
// Encryption at rest

const MAGIC = Buffer.from('PKB1');
export const MASTER_KEY_FILE = 'pki-master.key';
export const MASTER_KEY_ENV = 'PORTICO_PKI_KEY';

/** AES-256-GCM under the master key; `aad` binds a record to where it is stored. */
export class SealedBox {
  /** First 8 bytes of SHA-256(master key), hex: names the key in records and errors without revealing it. */
  readonly keyId: string;
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new PorticoError(ErrorCodes.PKI_KEY, `the PKI master key must be 32 bytes, got ${key.length}`);
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 16);
  }

  seal(plaintext: Buffer | string, aad: string): Buffer {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const ct = Buffer.concat([c.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), c.final()]);
    return Buffer.concat([MAGIC, iv, c.getAuthTag(), ct]);
  }

  open(sealed: Buffer, aad: string): Buffer {
    if (sealed.length < 32 || !sealed.subarray(0, 4).equals(MAGIC)) {
      throw new PorticoError(ErrorCodes.PKI_KEY, `record ${aad} is not a sealed PKI record`);
    }
    const d = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(4, 16));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(sealed.subarray(16, 32));
    try {
      return Buffer.concat([d.update(sealed.subarray(32)), d.final()]);
    } catch {
      throw new PorticoError(
        ErrorCodes.PKI_KEY,
        `cannot decrypt ${aad}: it was sealed under another PKI master key (this instance has key id ${this.keyId}; instances sharing a store need the same ${MASTER_KEY_ENV} or ${MASTER_KEY_FILE})`,
      );
    }
  }

  sealString(plaintext: string, aad: string): string {
    return this.seal(plaintext, aad).toString('base64');
  }

  openString(sealed: string, aad: string): string {
    return this.open(Buffer.from(sealed, 'base64'), aad).toString('utf8');
  }
}

/**
 * The master key: `PORTICO_PKI_KEY` (base64 of 32 bytes) if set, else `<dataDir>/pki-master.key`, created
 * 0600 with a random key on first use (exclusive create, so two processes on one data dir agree).
 */
export async function loadMasterKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  const fromEnv = env[MASTER_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = Buffer.from(fromEnv, 'base64');
    if (key.length !== 32)
      throw new PorticoError(ErrorCodes.PKI_KEY, `${MASTER_KEY_ENV} must be the base64 of 32 bytes (got ${key.length} bytes)`);
    return key;
  }
  const file = path.join(dataDir, MASTER_KEY_FILE);
  await fsp.mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    const fresh = randomBytes(32);
    await fsp.writeFile(file, `${fresh.toString('base64')}\n`, { flag: 'wx', mode: 0o600 });
    return fresh;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = await fsp.stat(file);
  if ((st.mode & 0o077) !== 0) await fsp.chmod(file, 0o600);
  const key = Buffer.from((await fsp.readFile(file, 'utf8')).trim(), 'base64');
  if (key.length !== 32) throw new PorticoError(ErrorCodes.PKI_KEY, `${file} does not hold the base64 of 32 bytes`);
  return key;
}

/** A positive 128-bit serial (RFC 5280 allows up to 20 octets), lower-case hex with no leading zero. */
export function newSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x10; // positive, and no leading zero nibble to normalise away
  return b.toString('hex');
}

export { x509 };
