/**
 * Lease ownership (src/overlay/owner.ts): what the runtime says about a container — CNI_ARGS PORTICO_*,
 * `args.portico`, `runtimeConfig.portMappings`, Mesos' `args["org.apache.mesos"].network_info` — which
 * source wins, and clear refusals of malformed metadata.
 */
import t from 'tap';
import { CniCode } from '../../src/overlay/cni/protocol.js';
import { CniFailure } from '../../src/overlay/failure.js';
import { ownerOf } from '../../src/overlay/owner.js';

const cfg = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name: 'n',
  type: 'bridge',
  ipam: { type: 'portico-cni' },
  ...extra,
});

t.test('CNI_ARGS: every key, port syntax, IgnoreUnknown and IP= left alone', async (t) => {
  const o = ownerOf(
    cfg(),
    'IgnoreUnknown=1;IP=9.0.0.9;PORTICO_SERVICE=web;PORTICO_TASK=web-1;PORTICO_TASK_ID=web.1a2b-3c;PORTICO_FRAMEWORK=my.fw;PORTICO_PORTS=http:8080/tcp,dns:53/udp,9090,dns:53/tcp',
  );
  t.same(
    o,
    {
      service: 'web',
      task: 'web-1',
      taskId: 'web.1a2b-3c',
      framework: 'my.fw',
      ports: [
        { name: 'http', port: 8080, protocol: 'tcp' },
        { name: 'dns', port: 53, protocol: 'tcp,udp' },
        { port: 9090, protocol: 'tcp' },
      ],
    },
    'the same port twice is one port with both protocols',
  );
  t.equal(ownerOf(cfg(), 'IgnoreUnknown=1;IP=9.0.0.9'), undefined, 'nothing said: no owner');
  t.equal(ownerOf(cfg(), undefined), undefined);
  t.same(ownerOf(cfg(), 'PORTICO_TASK=db'), { task: 'db', ports: [] }, 'a task alone is an owner (no ports yet)');
});

t.test('args.portico, runtimeConfig.portMappings, Mesos network_info; CNI_ARGS first', async (t) => {
  const portico = { service: 'api', task: 'api-7', framework: 'marathon', ports: [{ name: 'http', port: 80 }, 'grpc:9000/tcp'] };
  t.same(ownerOf(cfg({ args: { portico } }), undefined), {
    service: 'api',
    task: 'api-7',
    framework: 'marathon',
    ports: [
      { name: 'http', port: 80, protocol: 'tcp' },
      { name: 'grpc', port: 9000, protocol: 'tcp' },
    ],
  });
  t.same(
    ownerOf(
      cfg({
        args: { portico: { service: 'api' } },
        runtimeConfig: {
          portMappings: [
            { hostPort: 31000, containerPort: 8080, protocol: 'tcp' },
            { hostPort: 31001, containerPort: 8080, protocol: 'udp' },
          ],
        },
      }),
      undefined,
    ),
    { service: 'api', ports: [{ port: 8080, protocol: 'tcp,udp' }] },
    'portMap capability: the container ports',
  );
  const mesos = {
    'org.apache.mesos': {
      network_info: {
        name: 'dcos',
        labels: {
          labels: [
            { key: 'PORTICO_SERVICE', value: 'nginx' },
            { key: 'PORTICO_FRAMEWORK', value: 'marathon' },
            { key: 'app', value: 'x' },
          ],
        },
        port_mappings: [
          { host_port: 8080, container_port: 80 },
          { host_port: 8081, container_port: 443, protocol: 'tcp' },
        ],
      },
    },
  };
  t.same(
    ownerOf(cfg({ args: mesos }), undefined),
    {
      service: 'nginx',
      framework: 'marathon',
      ports: [
        { port: 80, protocol: 'tcp' },
        { port: 443, protocol: 'tcp' },
      ],
    },
    'Mesos: labels + port mappings',
  );
  t.same(
    ownerOf(cfg({ args: { ...mesos, portico: { service: 'fromargs', ports: ['7000'] } } }), 'PORTICO_SERVICE=fromenv;PORTICO_TASK=t'),
    {
      service: 'fromenv',
      task: 't',
      framework: 'marathon',
      ports: [{ port: 7000, protocol: 'tcp' }],
    },
    'CNI_ARGS > args.portico > Mesos, field by field; ports from the first source that declares any',
  );
});

t.test('malformed metadata is refused: code 4 for CNI_ARGS, 7 for the config', async (t) => {
  const bad: Array<[string, () => unknown, number, RegExp]> = [
    [
      'port out of range',
      () => ownerOf(cfg(), 'PORTICO_SERVICE=w;PORTICO_PORTS=http:70000'),
      CniCode.INVALID_ENV,
      /PORTICO_PORTS.*1\.\.65535/,
    ],
    ['port syntax', () => ownerOf(cfg(), 'PORTICO_PORTS=http=80'), CniCode.INVALID_ENV, /not a port/],
    ['protocol', () => ownerOf(cfg(), 'PORTICO_PORTS=80/sctp'), CniCode.INVALID_ENV, /"tcp" or "udp"/],
    ['service name', () => ownerOf(cfg(), 'PORTICO_SERVICE=we b'), CniCode.INVALID_ENV, /PORTICO_SERVICE must be a name/],
    ['service with @', () => ownerOf(cfg(), 'PORTICO_SERVICE=web@x'), CniCode.INVALID_ENV, /PORTICO_SERVICE/],
    [
      'args.portico not an object',
      () => ownerOf(cfg({ args: { portico: 'web' } }), undefined),
      CniCode.INVALID_CONFIG,
      /args\.portico must be an object/,
    ],
    [
      'args.portico.ports',
      () => ownerOf(cfg({ args: { portico: { ports: [{ port: 0 }] } } }), undefined),
      CniCode.INVALID_CONFIG,
      /ports\[0\]\.port/,
    ],
    [
      'portMappings',
      () => ownerOf(cfg({ runtimeConfig: { portMappings: [{ hostPort: 1 }] } }), undefined),
      CniCode.INVALID_CONFIG,
      /containerPort/,
    ],
    [
      'mesos labels',
      () =>
        ownerOf(
          cfg({ args: { 'org.apache.mesos': { network_info: { labels: { labels: [{ key: 'PORTICO_TASK', value: '' }] } } } } }),
          undefined,
        ),
      CniCode.INVALID_CONFIG,
      /PORTICO_TASK/,
    ],
  ];
  for (const [what, fn, code, re] of bad) {
    try {
      fn();
      t.fail(`${what}: accepted`);
    } catch (e) {
      t.ok(e instanceof CniFailure, `${what}: a CniFailure`);
      t.match(e, { code, message: re }, what);
    }
  }
});
