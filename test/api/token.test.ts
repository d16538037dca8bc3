import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { checkBearer, ensureToken, TOKEN_FILE } from '../../src/api/token.js';
import { ErrorCodes } from '../../src/model/errors.js';

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;

t.test('ensureToken creates the data dir 0700 and a 0600 token file, and reuses it', async (t) => {
  const dataDir = path.join(t.testdir(), 'data', 'nested');
  const first = await ensureToken(dataDir);
  t.match(first, /^[0-9a-f]{64}$/, '32 random bytes, hex');
  t.equal(await mode(dataDir), 0o700);
  const file = path.join(dataDir, TOKEN_FILE);
  t.equal(await mode(file), 0o600);
  t.equal((await readFile(file, 'utf8')).trim(), first);
  t.equal(await ensureToken(dataDir), first, 'second start reads the same token');
});

t.test('an existing token file open to others is fixed to 0600 and still used', async (t) => {
  const dataDir = t.testdir({ [TOKEN_FILE]: 'operator-provided-token-0123456789\n' });
  const file = path.join(dataDir, TOKEN_FILE);
  await chmod(file, 0o644);
  const warnings: unknown[] = [];
  const logger = { warn: (obj: unknown) => warnings.push(obj), info: () => {} } as never;
  t.equal(await ensureToken(dataDir, { logger }), 'operator-provided-token-0123456789');
  t.equal(await mode(file), 0o600);
  t.equal(warnings.length, 1, 'the fix is logged');
  t.notMatch(JSON.stringify(warnings), /operator-provided/, 'the value is not');
});

t.test('racing starts agree on one token', async (t) => {
  const dataDir = path.join(t.testdir(), 'data');
  const tokens = await Promise.all(Array.from({ length: 8 }, () => ensureToken(dataDir)));
  t.equal(new Set(tokens).size, 1);
  t.equal((await readFile(path.join(dataDir, TOKEN_FILE), 'utf8')).trim(), tokens[0]);
});

t.test('an unusable token file is refused with a clear error, not replaced', async (t) => {
  const dataDir = t.testdir({ [TOKEN_FILE]: '\n' });
  await t.rejects(ensureToken(dataDir), { name: 'PorticoError', code: ErrorCodes.CONFIG_READ, message: /does not hold a usable token/ });
  t.equal(await readFile(path.join(dataDir, TOKEN_FILE), 'utf8'), '\n');
});

t.test('an existing data dir keeps its mode', async (t) => {
  const dataDir = path.join(t.testdir(), 'data');
  await mkdir(dataDir, { mode: 0o750 });
  await chmod(dataDir, 0o750);
  await ensureToken(dataDir);
  t.equal(await mode(dataDir), 0o750);
});

t.test('checkBearer', async (t) => {
  const token = 'b'.repeat(64);
  t.ok(checkBearer(`Bearer ${token}`, token));
  t.ok(checkBearer(`bearer ${token}`, token), 'the scheme is case-insensitive');
  const wrong: Array<[string, string | undefined]> = [
    ['no header', undefined],
    ['empty header', ''],
    ['no scheme', token],
    ['basic scheme', `Basic ${token}`],
    ['empty credential', 'Bearer '],
    ['shorter', `Bearer ${token.slice(1)}`],
    ['longer', `Bearer ${token}b`],
    ['much longer', `Bearer ${token.repeat(100)}`],
    ['same length, one char off', `Bearer ${token.slice(1)}c`],
    ['extra words', `Bearer ${token} ${token}`],
  ];
  for (const [desc, header] of wrong) t.notOk(checkBearer(header, token), desc);
  t.notOk(checkBearer('Bearer ', ''), 'an empty configured token matches nothing');
  t.notOk(checkBearer('Bearer x', ''), 'an empty configured token matches nothing');
});
