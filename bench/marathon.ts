/**
 * Marathon full resync: 10,000 apps (3 tasks each) served by the Marathon API double on loopback
 * (test/providers/marathon/api-double.ts: Marathon's documented `/v2/apps?embed=apps.tasks` and
 * `/v2/events`), through a fresh MarathonProvider to its snapshot sink: event stream open, HTTP fetch of
 * the whole state, JSON.parse, translation of every app, snapshot assembly. Goal: ≤ 2 s.
 *
 * The apps look like a real cluster's answer: full Marathon 1.5+ app JSON (cmd, env, container, upgrade
 * strategy, version info…), a mix of host, bridge and container networking, a third with marathon-lb
 * labels, half with an HTTP health check and per-task results, VIP labels on a fifth.
 *
 *   node --import tsx bench/marathon.ts            (or call benchMarathonResync from bench/table.ts)
 */
import { MarathonProvider } from '../src/providers/marathon/index.js';
import type { Snapshot } from '../src/model/types.js';
import { MarathonDouble } from '../test/providers/marathon/api-double.js';
import { median, percentile, round, say } from './lib.js';

export interface MarathonBenchOptions {
  apps?: number;
  tasksPerApp?: number;
  runs?: number;
}

export interface MarathonBenchResult {
  apps: number;
  tasks: number;
  medianMs: number;
  p99Ms?: number;
  runs: number;
  /** Size of the `/v2/apps?embed=apps.tasks` answer. */
  bodyMB: number;
  /** Services in the snapshot (one per app port). */
  services: number;
}

/** One app as Marathon 1.5+ returns it with `embed=apps.tasks`. */
export function benchApp(i: number, tasksPerApp: number): Record<string, unknown> {
  const id = `/team-${i % 50}/app-${i}`;
  const kind = i % 3; // 0 host, 1 bridge, 2 container network
  const http = i % 2 === 0;
  const labels: Record<string, string> = { owner: `team-${i % 50}`, DCOS_SERVICE_NAME: `app-${i}` };
  if (i % 3 === 0)
    Object.assign(labels, { HAPROXY_GROUP: 'external', HAPROXY_0_VHOST: `app-${i}.example.test`, HAPROXY_0_REDIRECT_TO_HTTPS: 'true' });
  const portLabels: Record<string, string> = i % 5 === 0 ? { VIP_0: `${id}:80` } : {};
  const version = '2017-07-19T17:34:41.967Z';
  const tasks = [];
  for (let k = 0; k < tasksPerApp; k++) {
    const n = i * tasksPerApp + k;
    const host = `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
    const task: Record<string, unknown> = {
      id: `${id.slice(1).replace(/\//g, '_')}.instance-${((n * 2654435761) >>> 0).toString(16).padStart(8, '0')}-6ca8-11e7-beb2-0e2beceebfcc._app.1`,
      appId: id,
      host,
      ipAddresses: [{ ipAddress: kind === 2 ? `9.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` : host, protocol: 'IPv4' }],
      ports: kind === 2 ? [] : [31000 + (n % 1000)],
      servicePorts: [10000 + (i % 20000)],
      slaveId: `db7b40e2-791c-445f-b373-183e2a648a86-S${n % 500}`,
      stagedAt: '2017-07-19T17:34:43.039Z',
      startedAt: '2017-07-19T17:35:15.654Z',
      state: 'TASK_RUNNING',
      version,
      localVolumes: [],
      region: 'aws/us-west-2',
      zone: 'aws/us-west-2b',
    };
    if (http)
      task.healthCheckResults = [
        {
          alive: n % 97 !== 0,
          consecutiveFailures: 0,
          firstSuccess: '2017-07-19T17:35:20.376Z',
          lastFailure: null,
          lastSuccess: '2017-07-19T17:40:20.376Z',
          instanceId: `instance [${String(task.id)}]`,
        },
      ];
    tasks.push(task);
  }
  const app: Record<string, unknown> = {
    id,
    backoffFactor: 1.15,
    backoffSeconds: 1,
    cmd: 'python3 -m http.server $PORT0',
    cpus: 0.1,
    disk: 0,
    env: { LOG_LEVEL: 'info', SERVICE: `app-${i}` },
    executor: '',
    instances: tasksPerApp,
    labels,
    maxLaunchDelaySeconds: 3600,
    mem: 128,
    gpus: 0,
    requirePorts: false,
    upgradeStrategy: { maximumOverCapacity: 1, minimumHealthCapacity: 1 },
    version,
    versionInfo: { lastScalingAt: version, lastConfigChangeAt: version },
    killSelection: 'YOUNGEST_FIRST',
    unreachableStrategy: { inactiveAfterSeconds: 300, expungeAfterSeconds: 600 },
    tasksStaged: 0,
    tasksRunning: tasksPerApp,
    tasksHealthy: http ? tasksPerApp : 0,
    tasksUnhealthy: 0,
    deployments: [],
    healthChecks: http
      ? [
          {
            gracePeriodSeconds: 300,
            intervalSeconds: 60,
            maxConsecutiveFailures: 3,
            path: '/health',
            portIndex: 0,
            protocol: 'MESOS_HTTP',
            timeoutSeconds: 20,
            delaySeconds: 15,
          },
        ]
      : [],
    tasks,
  };
  if (kind === 0) {
    app.networks = [{ mode: 'host' }];
    app.portDefinitions = [{ port: 10000 + (i % 20000), protocol: 'tcp', name: 'http', labels: portLabels }];
    app.container = null;
  } else {
    app.networks = kind === 1 ? [{ mode: 'container/bridge' }] : [{ mode: 'container', name: 'dcos' }];
    app.container = {
      type: 'DOCKER',
      docker: { forcePullImage: false, image: 'python:3', parameters: [], privileged: false },
      volumes: [],
      portMappings: [
        {
          containerPort: 8080,
          hostPort: kind === 1 ? 0 : undefined,
          labels: portLabels,
          name: 'http',
          protocol: 'tcp',
          servicePort: 10000 + (i % 20000),
        },
      ],
    };
  }
  return app;
}

export async function benchMarathonResync(opts: MarathonBenchOptions = {}): Promise<MarathonBenchResult> {
  const appCount = opts.apps ?? 10_000;
  const tasksPerApp = opts.tasksPerApp ?? 3;
  const runs = opts.runs ?? 5;
  const apps = Array.from({ length: appCount }, (_, i) => benchApp(i, tasksPerApp));
  const d = new MarathonDouble();
  d.appsBody = Buffer.from(JSON.stringify({ apps }));
  const bodyMB = round(d.appsBody.length / 2 ** 20, 1);
  await d.start();
  const times: number[] = [];
  let services = 0;
  let tasks = 0;
  try {
    // One unmeasured warm-up run (JIT), then the measured ones; each with a fresh provider.
    for (let r = 0; r <= runs; r++) {
      let snap: Snapshot | undefined;
      const p = new MarathonProvider({ url: d.url, groups: ['external'], resyncIntervalMs: 0 });
      const t0 = performance.now();
      await p.start((s) => {
        snap = s;
      });
      const ms = performance.now() - t0;
      const st = p.status();
      await p.stop();
      if (!snap || st.state !== 'ok') throw new Error(`marathon bench: the resync failed: ${st.lastError ?? 'no snapshot'}`);
      services = Object.keys(snap.services).length;
      tasks = Number(st.details?.tasks ?? 0);
      if (r > 0) times.push(ms);
    }
  } finally {
    await d.stop();
  }
  const result: MarathonBenchResult = { apps: appCount, tasks, medianMs: round(median(times)), runs, bodyMB, services };
  if (times.length >= 2) result.p99Ms = round(percentile(times, 99));
  return result;
}

if (require.main === module) {
  benchMarathonResync().then(
    (r) => {
      say(
        `marathon full resync: ${r.apps} apps / ${r.tasks} tasks (${r.bodyMB} MB): median ${r.medianMs} ms, p99 ${r.p99Ms} ms over ${r.runs} runs (goal ≤ 2000 ms)`,
      );
      process.stdout.write(
        `${JSON.stringify({ bench: 'marathon', results: { portico: r }, goals: { resyncMs: { goal: '<= 2000', met: r.medianMs <= 2000 } } })}\n`,
      );
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
