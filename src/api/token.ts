/**
 * The admin api's bearer token: one random secret in `<data>/api-token` (0600), created on first start
 * and read on every later one, so the CLI on the same machine can read it and nothing else can.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { link, mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes, PorticoError } from '../model/errors.js';
import type { Logger } from '../telemetry/log.js';
import { silentLogger } from '../telemetry/log.js';

export const TOKEN_FILE = 'api-token';

/** A token an operator provisions by hand must still be long enough not to be guessed, and header-safe. */
const TOKEN_SHAPE = /^[\x21-\x7e]{16,}$/;

/**
 * The token in `<dataDir>/api-token`, creating it (32 random bytes, hex) if there is none.
 *
 * - `dataDir` is created 0700 if missing (an existing one is left as the operator set it).
 * - A new token is written to a private temp file opened with O_EXCL, fsync'd, then published with
 *   `link()`, which fails if the name exists. So two daemons starting at once agree on one token (the
 *   loser reads the winner's), and no reader ever sees a half-written file.
 * - An existing file readable or writable by group/others is tightened to 0600 (and a warning logged).
 * - The value is never logged.
 */
export async function ensureToken(dataDir: string, opts: { logger?: Logger } = {}): Promise<string> {
  const log = opts.logger ?? silentLogger;
  const file = path.join(dataDir, TOKEN_FILE);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });

  const existing = await readToken(file, log);
  if (existing !== undefined) return existing;

  const token = randomBytes(32).toString('hex');
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try {
    await fh.writeFile(`${token}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, file);
    log.info({ file }, 'api token created');
    return token;
  } catch (err) {
    if (!isCode(err, 'EEXIST')) throw err;
    // Another process published its token between our read and our link: use theirs.
    const theirs = await readToken(file, log);
    if (theirs === undefined) throw err;
    return theirs;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** The token in `file`, `undefined` if there is no such file; throws if it exists but is unusable. */
async function readToken(file: string, log: Logger): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(file, fsc.O_RDONLY);
  } catch (err) {
    if (isCode(err, 'ENOENT')) return undefined;
    throw new PorticoError(ErrorCodes.CONFIG_READ, `cannot open the api token file ${file}: ${(err as Error).message}`, 500, {
      cause: err,
    });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new PorticoError(ErrorCodes.CONFIG_READ, `the api token file ${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      await fh.chmod(0o600).catch((err: Error) => {
        throw new PorticoError(
          ErrorCodes.CONFIG_READ,
          `the api token file ${file} is open to group/others and its mode cannot be fixed: ${err.message}`,
          500,
          { cause: err },
        );
      });
      log.warn({ file, mode: (st.mode & 0o777).toString(8) }, 'api token file was open to group/others; mode set to 0600');
    }
    const token = (await fh.readFile('utf8')).trim();
    if (!TOKEN_SHAPE.test(token)) {
      throw new PorticoError(
        ErrorCodes.CONFIG_READ,
        `the api token file ${file} does not hold a usable token (16+ printable characters, no spaces); delete it to have a new one made`,
      );
    }
    return token;
  } finally {
    await fh.close();
  }
}

/**
 * Whether an `Authorization` header carries `token` as a bearer credential.
 *
 * Both sides are hashed (SHA-256) before `timingSafeEqual`, so the comparison takes the same time
 * whatever the presented value is, and its length leaks nothing (timingSafeEqual itself throws on
 * unequal lengths, which would be an oracle for the token's length).
 */
export function checkBearer(header: string | undefined, token: string): boolean {
  if (!header || !token) return false;
  const m = /^bearer +(\S+) *$/i.exec(header);
  const presented = m?.[1];
  if (presented === undefined) return false;
  return timingSafeEqual(sha256(presented), sha256(token));
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}
