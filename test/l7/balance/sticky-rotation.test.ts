/**
 * Sticky secrets rotate under live balancers: ids are issued under the current secret, a cookie under the
 * previous one still routes to its endpoint (and is re-stamped), and one under neither is rebalanced.
 */
import t from 'tap';
import { DEFAULT_STICKY_COOKIE, StickyCookie, StickySecrets, UpstreamSet, stickyId, type Upstream } from '../../../src/l7/balance/index.js';
import type { Balance } from '../../../src/model/types.js';
import { Clock, ep, options, service, TestContext } from './helpers.js';

const sticky: Balance = { algorithm: 'sticky' };
const cookie = (id: string | undefined) => ({ headers: { cookie: `${DEFAULT_STICKY_COOKIE}=${id}` } });

t.test('a rotation reaches a live balancer; the previous secret still routes, and is re-stamped', async (t) => {
  const secrets = new StickySecrets('first');
  const set = new UpstreamSet(service([ep(1), ep(2), ep(3)], sticky), undefined, options(new Clock(), { stickySecret: secrets }));
  const b = set.balancer as StickyCookie;
  const c = new TestContext();
  const target = set.all[2] as Upstream;
  const oldId = b.idOf(target);
  t.equal(oldId, stickyId('first', set.serviceId, target.key), 'ids are HMACs under the current secret');

  secrets.set('second', 'first');
  t.equal(secrets.generation, 1);
  const newId = b.idOf(target);
  t.equal(newId, stickyId('second', set.serviceId, target.key), 'the same balancer now issues under the new secret');
  t.not(newId, oldId);

  for (let i = 0; i < 6; i++) {
    const q = c.set(cookie(oldId));
    t.equal(set.pick(q), target, `pick ${i}: a cookie under the previous secret routes to its endpoint`);
    t.equal(
      b.setCookie(q, target),
      `${DEFAULT_STICKY_COOKIE}=${newId}; Path=/; HttpOnly; SameSite=Lax`,
      're-stamped under the current secret',
    );
  }
  const q = c.set(cookie(newId));
  t.equal(set.pick(q), target);
  t.equal(b.setCookie(q, target), undefined, 'a current cookie needs no Set-Cookie');

  // The grace is over: only the current secret is held; an old cookie is unknown and rebalanced.
  secrets.set('second');
  const seen = new Set<Upstream | undefined>();
  for (let i = 0; i < 3; i++) seen.add(set.pick(c.set(cookie(oldId))));
  t.equal(seen.size, 3, 'a cookie under neither secret is balanced like no cookie');
  t.equal(set.pick(c.set(cookie(newId))), target, 'the current id still routes');
});

t.test('StickySecrets: no-op sets keep the generation; bad secrets are refused; never serialised', async (t) => {
  const s = new StickySecrets(Buffer.from('aaaa'));
  s.set(Buffer.from('aaaa'));
  t.equal(s.generation, 0, 'the same secret again is not a rotation');
  s.set(Buffer.from('bbbb'), Buffer.from('aaaa'));
  s.set(Buffer.from('bbbb'), Buffer.from('aaaa'));
  t.equal(s.generation, 1);
  t.throws(() => s.set(Buffer.alloc(0)), { name: 'TypeError', message: /sticky current secret must be a non-empty/ });
  t.throws(() => s.set('x', ''), { name: 'TypeError', message: /sticky previous secret/ });
  t.equal(s.generation, 1, 'a refused set changes nothing');
  t.same(JSON.parse(JSON.stringify({ s })), { s: { generation: 1, previous: true } }, 'JSON shows the generation, not the secrets');
  const buf = Buffer.from('cccc');
  const held = new StickySecrets(buf);
  buf.fill(0);
  t.equal(held.current.toString(), 'cccc', 'a copy is kept: the caller may reuse its buffer');
});
