/**
 * A full resync reads each app's bytes apart (src/providers/marathon/slices.ts) and parses and translates
 * only the apps whose bytes differ from the last resync's, or that something else may have changed (an
 * event since, a host name to resolve, a remembered health verdict). Against the Marathon API double
 * (Marathon itself cannot be installed here), on a real socket; waits are on the provider's answers.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import type { Snapshot } from '../../../src/model/types.js';
import { MarathonProvider } from '../../../src/providers/marathon/index.js';
import { createLogger } from '../../../src/telemetry/log.js';
import { waitFor } from '../../helpers/wait.js';
import { LogRecorder, SnapshotRecorder } from '../file/recorder.js';
import { MarathonDouble } from './api-double.js';

const docsApps = (): Array<Record<string, unknown>> =>
  (JSON.parse(readFileSync(join(__dirname, 'fixtures', 'apps.json'), 'utf8')) as { apps: Array<Record<string, unknown>> }).apps;

async function harness(t: Test, apps = docsApps()) {
  const d = new MarathonDouble();
  d.apps = apps;
  await d.start();
  const snaps = new SnapshotRecorder();
  const p = new MarathonProvider({
    url: d.url,
    groups: ['*'],
    debounceMs: 5,
    logger: createLogger({ level: 'warn', destination: new LogRecorder() }),
  });
  t.teardown(async () => {
    await p.stop();
    await d.stop();
  });
  await p.start(snaps.sink);
  return { d, p, snaps };
}

const reread = (p: MarathonProvider): number => (p.status().details as { lastSync: { reread: number } }).lastSync.reread;
const last = (s: SnapshotRecorder): Snapshot => s.items[s.count - 1] as Snapshot;
const tasksOf = (d: MarathonDouble, id: string) => (d.findApp(id) as { tasks: Array<Record<string, unknown>> }).tasks;

/** What a provider that never saw this Marathon before makes of it now. */
async function fresh(t: Test, d: MarathonDouble): Promise<Snapshot> {
  const snaps = new SnapshotRecorder();
  const p = new MarathonProvider({ url: d.url, groups: ['*'], logger: createLogger({ level: 'warn', destination: new LogRecorder() }) });
  t.teardown(() => p.stop());
  await p.start(snaps.sink);
  return last(snaps);
}

t.test('an unchanged resync parses nothing; a changed app is read again and served', async (t) => {
  const h = await harness(t);
  t.equal(reread(h.p), 4, 'the first sync reads every app');
  t.equal(await h.p.resync(), true);
  t.equal(reread(h.p), 0, 'same bytes, nothing changed since: no app parsed again');
  const sent = h.snaps.count;

  // Marathon now says one task of /toggle moved to another port.
  const task = tasksOf(h.d, '/toggle')[0] as { ports: number[] };
  task.ports = [task.ports[0]! + 1];
  t.equal(await h.p.resync(), true);
  t.equal(reread(h.p), 1, 'only /toggle is parsed again');
  t.ok(h.snaps.count > sent, 'the change is sent');
  const now = last(h.snaps);
  t.ok(
    now.services['toggle-0']?.endpoints.some((e) => e.port === task.ports[0]),
    'the moved task is served at its new port',
  );
  t.same(now.services, (await fresh(t, h.d)).services, 'what is served is what a fresh read of Marathon gives');
});

t.test('an app an event changed is read again even when Marathon sends the same bytes', async (t) => {
  const h = await harness(t);
  const before = last(h.snaps).services['toggle-0']?.endpoints.length ?? 0;
  const [first] = tasksOf(h.d, '/toggle') as Array<{ id: string }>;
  // The event says the task is gone; Marathon's answer still has it (it is what Marathon says that counts).
  h.d.pushEvent('status_update_event', { appId: '/toggle', taskId: first!.id, taskStatus: 'TASK_KILLED' });
  await waitFor(() => (last(h.snaps).services['toggle-0']?.endpoints.length ?? 0) === before - 1, {
    timeoutMs: 10_000,
    what: 'the event applied',
  });
  t.equal(await h.p.resync(), true);
  t.equal(reread(h.p), 1, 'the app the event touched is parsed again');
  t.equal(last(h.snaps).services['toggle-0']?.endpoints.length, before, 'the task is back, as Marathon says');
  t.equal(await h.p.resync(), true);
  t.equal(reread(h.p), 0, 'and from then on it is as it was read');
});

t.test('an app on an agent named by host name is read again on every resync (the name may resolve otherwise)', async (t) => {
  const apps = docsApps();
  const named = apps.find((a) => a.id === '/pywebserver') as { tasks: Array<Record<string, unknown>> };
  named.tasks[0]!.host = 'localhost';
  const h = await harness(t, apps);
  t.equal(await h.p.resync(), true);
  t.equal(reread(h.p), 1, '/pywebserver is parsed again, the three others not');
  t.ok(last(h.snaps).services['pywebserver-0']?.endpoints.length, 'its task is served (localhost resolves)');
});

t.test('an app with health checks whose task has no results yet is read again (a remembered verdict stands in)', async (t) => {
  const apps = docsApps();
  const spark = apps.find((a) => a.id === '/spark') as { tasks: Array<Record<string, unknown>> };
  delete spark.tasks[0]!.healthCheckResults;
  const h = await harness(t, apps);
  t.equal(await h.p.resync(), true);
  t.equal(reread(h.p), 1);
});

t.test('an answer whose apps cannot be placed without parsing is parsed whole, with JSON.parse errors', async (t) => {
  const h = await harness(t);
  h.d.appsBody = Buffer.from('{"apps": [{"id": "/x"}, 7]}');
  t.equal(await h.p.resync(), true, 'an element that is not an object: parsed whole, translated as before');
  t.equal(reread(h.p), 2);
  h.d.appsBody = Buffer.from('{"apps": [{"id": "/x", }]}');
  t.equal(await h.p.resync(), false);
  t.match(h.p.status().lastError, /the answer is not JSON/);
  t.ok(last(h.snaps).services, 'the last good state keeps serving');
});
