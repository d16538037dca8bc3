/**
 * crypt(3) hashes computed with node:crypto, against the SHA-crypt specification's vectors (Drepper,
 * rounds= variants included; output checked once against libxcrypt's crypt()), MD5-crypt vectors, and
 * hashes `openssl passwd` makes on this machine now for random passwords and salts.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { cryptHash, hashScheme, safeEqual, verifyPassword } from '../../../src/l7/crypt.js';

const run = promisify(execFile);

// [password, setting, crypt(password, setting)]
const VECTORS: Array<[string, string, string]> = [
  ['Hello world!', '$5$saltstring', '$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5'],
  ['Hello world!', '$5$rounds=10000$saltstringsaltstring', '$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA'],
  [
    'This is just a test',
    '$5$rounds=5000$toolongsaltstring',
    '$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5',
  ],
  [
    'a very much longer text to encrypt.  This one even stretches over morethan one line.',
    '$5$rounds=1400$anotherlongsaltstring',
    '$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1',
  ],
  [
    'we have a short salt string but not a short password',
    '$5$rounds=77777$short',
    '$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/',
  ],
  ['Hello world!', '$6$saltstring', '$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1'],
  [
    'Hello world!',
    '$6$rounds=10000$saltstringsaltstring',
    '$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.',
  ],
  [
    'This is just a test',
    '$6$rounds=5000$toolongsaltstring',
    '$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0',
  ],
  [
    'a very much longer text to encrypt.  This one even stretches over morethan one line.',
    '$6$rounds=1400$anotherlongsaltstring',
    '$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1',
  ],
  ['password', '$1$saltstri', '$1$saltstri$qQY4WxjABChYG1ccLpfkz/'],
  ['', '$1$$', '$1$$qRPK7m23GJusamGpoGLby/'],
  ['', '$6$emptypw', '$6$emptypw$TWmzQ8/uLn1BFSZ5Lkfum8lAba5vixF9Nl3Aiof.Praatq9nh0kkPuTdoVrIL6du0L6LAoadbPq.q.D7keveg/'],
  ['', '$5$rounds=1500$emptypw', '$5$rounds=1500$emptypw$ECbqV4KXjMn6lKn1wg9SSM4K7MblSckSyIuMfEViPCC'],
];

t.test("the specification's vectors, SHA-256, SHA-512 (rounds= too) and MD5", async (t) => {
  for (const [pw, setting, want] of VECTORS) {
    t.equal(cryptHash(pw, setting), want, `crypt(${JSON.stringify(pw)}, ${setting})`);
    t.ok(verifyPassword(pw, want), `verify ${want.slice(0, 20)}…`);
    t.notOk(verifyPassword(`${pw}x`, want), `a wrong password does not verify against ${want.slice(0, 20)}…`);
  }
});

t.test('rounds below the minimum are raised to 1000, as the specification says', async (t) => {
  // The spec: "$5$rounds=10$roundstoolow" gives the rounds=1000 hash (libxcrypt refuses such a setting instead).
  t.equal(
    cryptHash('the minimum number is still observed', '$5$rounds=10$roundstoolow'),
    '$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC',
  );
  t.equal(cryptHash('x', '$6$rounds=abc$salt'), undefined, 'a malformed rounds= is no setting at all');
});

t.test('agrees with openssl passwd -1/-5/-6 for random passwords and salts', async (t) => {
  const alphabet = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const salt = (n: number) => [...randomBytes(n)].map((b) => alphabet[b & 63]).join('');
  const cases: Array<[string, string]> = [
    ['-6', salt(16)],
    ['-6', salt(4)],
    ['-6', `rounds=2000$${salt(12)}`],
    ['-5', salt(16)],
    ['-5', salt(8)],
    ['-5', `rounds=1234$${salt(10)}`],
    ['-1', salt(8)],
    ['-1', salt(3)],
  ];
  for (const [flag, s] of cases) {
    // Passwords of every length class: short, longer than one digest (64 bytes), non-ASCII (openssl
    // refuses an empty one: the vectors above cover it).
    for (const pw of ['p', randomBytes(9).toString('base64'), randomBytes(70).toString('base64'), 'pässwörd ü']) {
      const { stdout } = await run('openssl', ['passwd', flag, '-salt', s, pw]);
      const want = stdout.trim();
      t.equal(cryptHash(pw, want), want, `openssl passwd ${flag} -salt ${s} (password of ${Buffer.byteLength(pw)} bytes)`);
    }
  }
});

t.test('{PLAIN}, unsupported schemes, constant-time comparison helper', async (t) => {
  t.ok(verifyPassword('s3cret', '{PLAIN}s3cret'));
  t.notOk(verifyPassword('s3cret!', '{PLAIN}s3cret'));
  t.notOk(verifyPassword('', '{PLAIN}s3cret'));
  t.equal(hashScheme('$2y$10$abcdefghijklmnopqrstuu'), 'unsupported');
  t.equal(hashScheme('abJnggxhB/yWI'), 'unsupported', 'DES crypt is not supported');
  t.notOk(verifyPassword('anything', '$2y$10$abcdefghijklmnopqrstuu'), 'an unsupported hash never matches');
  t.notOk(verifyPassword('', ''), 'an empty hash never matches');
  t.ok(safeEqual('abc', 'abc'));
  t.notOk(safeEqual('abc', 'abd'));
  t.notOk(safeEqual('abc', 'abcd'));
});
