/**
 * What the overlay provider hands over when its sink takes changes: two providers watch one embedded store
 * in which two agents' real IPAM writes leases; one hands a sink with `change` (deltas after the first
 * snapshot), the other a plain function (whole snapshots). After each lease or agent change, the deltas
 * applied to a model of the provider's knowledge give the whole snapshot, two real Aggregators (fed `change`
 * and `update`) serve the same table, and the deltas of the step name exactly the services the change
 * touched: one container's port, one service.
 */
import t from 'tap';
import type { Test } from 'tap';
import type { Snapshot } from '../../../src/model/types.js';
import { KEY } from '../../../src/overlay/types.js';
import { OverlayProvider } from '../../../src/providers/overlay/index.js';
import { Feed, agree, sameObjects, type Handover } from '../feed.js';
import { conf, setup } from './helpers.js';

type View = Pick<Snapshot, 'services'>;

/** Run `act`; wait until both providers handed over a state where `done` holds. Returns the delta feed's hand-overs. */
async function step(fd: Feed, fw: Feed, what: string, act: () => Promise<unknown>, done: (v: View) => boolean): Promise<Handover[]> {
  const nd = fd.count;
  const nw = fw.count;
  await act();
  await fd.handovers.until(() => done({ services: fd.model.services }), 5000, `${what}: the delta feed`, nd);
  await fw.handovers.until((h) => h.kind === 'snapshot' && done(h.snapshot), 5000, `${what}: the whole feed`, nw);
  return fd.handovers.items.slice(nd);
}

/** The services the hand-overs of a step name (all deltas, else a failure). */
function named(t: Test, hs: Handover[], what: string): string[] {
  const out = new Set<string>();
  for (const h of hs) {
    if (h.kind !== 'delta') {
      t.fail(`${what}: a whole snapshot where a delta was expected`);
      continue;
    }
    t.same(
      Object.keys(h.delta).filter((k) => k !== 'upsert' && k !== 'remove'),
      [],
      `${what}: services only`,
    );
    for (const n of [...Object.keys(h.delta.upsert ?? {}), ...(h.delta.remove ?? [])]) out.add(n);
  }
  return [...out].sort();
}

const count = (v: View, name: string): number => v.services[name]?.endpoints.length ?? 0;

function lastWhole(f: Feed): Snapshot {
  const h = f.last();
  if (h?.kind !== 'snapshot') throw new Error('the whole feed has no snapshot');
  return h.snapshot;
}

t.test('lease and agent changes are deltas naming the services they touch; deltas and whole snapshots serve one table', async (t) => {
  const { store, a, b } = await setup(t);
  const pd = new OverlayProvider({ store, debounceMs: 5 });
  const pw = new OverlayProvider({ store, debounceMs: 5 });
  const fd = new Feed('overlay', 30, true);
  const fw = new Feed('overlay', 30, false);
  t.teardown(async () => {
    await pd.stop();
    await pw.stop();
    fd.agg.close();
    fw.agg.close();
  });
  await pd.start(fd.sink);
  await pw.start(fw.sink);
  t.equal(fd.handovers.items[0]?.kind, 'snapshot', 'the first hand-over is whole');

  let hs = await step(
    fd,
    fw,
    'web container',
    () => a.ipam.add(conf(), 'w1', 'eth0', 'PORTICO_SERVICE=web;PORTICO_TASK=web-1;PORTICO_PORTS=http:8080,metrics:9090'),
    (v) => count(v, 'web-0') === 2 && count(v, 'web-1') === 2,
  );
  t.same(named(t, hs, 'web container'), ['web-0', 'web-1'], 'one service per declared port');
  agree(t, fd, fw, 'web container');

  hs = await step(
    fd,
    fw,
    'api container',
    () => a.ipam.add(conf(), 'c1', 'eth0', 'PORTICO_SERVICE=api;PORTICO_TASK=api-1;PORTICO_PORTS=http:8000'),
    (v) => count(v, 'api-0') === 2,
  );
  t.same(named(t, hs, 'api container'), ['api-0']);
  agree(t, fd, fw, 'api container');

  const before = lastWhole(fw);
  hs = await step(
    fd,
    fw,
    'second instance',
    () => b.ipam.add(conf(), 'c2', 'eth0', 'PORTICO_SERVICE=api;PORTICO_TASK=api-2;PORTICO_PORTS=http:8000'),
    (v) => count(v, 'api-0') === 4,
  );
  t.same(named(t, hs, 'second instance'), ['api-0'], 'one more container: exactly its service');
  agree(t, fd, fw, 'second instance');
  sameObjects(t, before, lastWhole(fw), ['api-0'], 'whole snapshots');

  // Another framework's `api`: both are named framework-qualified now.
  hs = await step(
    fd,
    fw,
    'other framework',
    () => a.ipam.add(conf(), 'o1', 'eth0', 'PORTICO_SERVICE=api;PORTICO_FRAMEWORK=other;PORTICO_PORTS=9000'),
    (v) => count(v, 'other.api-0') === 2 && count(v, 'overlay.api-0') === 4,
  );
  t.same(named(t, hs, 'other framework'), ['api-0', 'other.api-0', 'overlay.api-0']);
  agree(t, fd, fw, 'other framework');

  // An agent's underlay address changes: the services of its leases, no others.
  hs = await step(
    fd,
    fw,
    'agent moved',
    () => store.put(KEY.agent('agent-b'), JSON.stringify({ ...b.rec, agentIp: '192.0.2.22' })),
    (v) => v.services['overlay.api-0']?.endpoints.some((e) => e.agentAddress === '192.0.2.22') === true,
  );
  t.same(named(t, hs, 'agent moved'), ['overlay.api-0'], 'only the service with a lease on agent-b');
  agree(t, fd, fw, 'agent moved');

  // An agent record that changes, but not the agent's address: its leases' services are built again and
  // come out the same, so nothing of them is handed over (only the container added after it is).
  hs = await step(
    fd,
    fw,
    'agent record, same address',
    async () => {
      await store.put(KEY.agent('agent-a'), JSON.stringify({ ...a.rec, vtepMac: '02:00:00:00:00:aa' }));
      await a.ipam.add(conf(), 'k1', 'eth0', 'PORTICO_SERVICE=cache;PORTICO_PORTS=6379');
    },
    (v) => count(v, 'cache-0') === 2,
  );
  t.same(named(t, hs, 'agent record, same address'), ['cache-0']);
  agree(t, fd, fw, 'agent record, same address');

  hs = await step(
    fd,
    fw,
    'DEL',
    () => a.ipam.del(conf(), 'o1', 'eth0'),
    (v) => count(v, 'api-0') === 4 && v.services['other.api-0'] === undefined,
  );
  t.same(named(t, hs, 'DEL'), ['api-0', 'other.api-0', 'overlay.api-0'], 'the other framework gone: unqualified again');
  agree(t, fd, fw, 'DEL');
  t.match(pd.status().details, { attachments: 4, services: 4, endpoints: 10 }, 'counts kept as leases change');
});
