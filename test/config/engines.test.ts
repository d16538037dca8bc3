/**
 * The engines' sections of the config file (l7:, l4:, dns:), defined in the planes' settings.ts: every
 * engine option is reachable from the file (so an option can no longer exist in an engine and not in the
 * file), decodes to the engine's unit, and a bad value is refused with its path and reason.
 */
import t from 'tap';
import { parseConfigText } from '../../src/config/index.js';
import { DNS_DEFAULTS, dnsSettings } from '../../src/dns/settings.js';
import { L4_DEFAULTS, l4Settings, resolveL4Options } from '../../src/l4/settings.js';
import { L7_DEFAULTS, l7Settings, resolveL7Options } from '../../src/l7/settings.js';
import { fileKeys, type Setting } from '../../src/model/settings.js';
import { issuesOf, yaml } from './helpers.js';

/** Values the file can give a setting, other than its default (the first that loads is used). */
function candidates(s: Setting): unknown[] {
  const schema = s.schema as Record<string, unknown>;
  const def = schema.default;
  const min = schema.minimum as number | undefined;
  const max = schema.maximum as number | undefined;
  switch (s.kind) {
    case 'boolean':
      return [!def];
    case 'integer':
    case 'number':
      return [(def as number) + 1, (def as number) - 1, min, max, 65_521].filter((v) => v !== undefined && v !== def);
    case 'enum':
      return (schema.enum as string[]).filter((v) => v !== def);
    case 'duration': {
      const ms = s.defaultValue as number;
      const unit = s.fileKey('xS') === 'x' ? 1000 : 1; // a seconds-valued setting (…S) decodes to whole seconds
      return [`${ms * unit + 60_000}ms`, `${Math.floor((ms * unit) / 2000) * 1000}ms`, '1s', '2s'];
    }
    case 'size':
      return [(s.defaultValue as number) + 1024, Math.floor((s.defaultValue as number) / 2), '2KiB', 512];
    case 'string':
      return schema.format === 'listen' ? ['127.0.0.1:1053'] : ['edge'];
    case 'list': {
      const format = (s.item?.schema as Record<string, unknown> | undefined)?.format;
      if (format === 'cidr') return [['10.1.0.0/16', '127.0.0.1']];
      if (format === 'upstream') return [['192.0.2.53']];
      if (format === 'domain') return [['example.test']];
      return [];
    }
    case 'map':
      return [{ 'corp.test': ['192.0.2.53', '192.0.2.54:5353'] }];
    default:
      return [];
  }
}

const engines: Array<[string, Setting, Record<string, unknown>]> = [
  ['l7', l7Settings, L7_DEFAULTS],
  ['l4', l4Settings, L4_DEFAULTS],
  ['dns', dnsSettings, { ...DNS_DEFAULTS, now: undefined }],
];

t.test('every engine option is reachable from the file, and decodes to something other than its default', async (t) => {
  for (const [name, section, defaults] of engines) {
    const options = Object.keys(defaults).filter((k) => k !== 'now');
    const keys = fileKeys(section);
    t.same(Object.keys(keys).sort(), options.sort(), `${name}: the section's keys are the engine's options`);

    const visit = (s: Setting, filePath: string[], enginePath: string[]) => {
      if (s.kind === 'section') {
        for (const [k, c] of Object.entries(s.children ?? {})) visit(c, [...filePath, c.fileKey(k)], [...enginePath, k]);
        return;
      }
      const at = (v: Record<string, unknown>) => enginePath.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], v);
      let reached = false;
      for (const value of candidates(s)) {
        const doc = filePath.reduceRight<unknown>((inner, k) => ({ [k]: inner }), value);
        let cfg;
        try {
          cfg = parseConfigText(JSON.stringify(doc));
        } catch {
          continue;
        }
        const got = at(cfg as unknown as Record<string, unknown>);
        if (JSON.stringify(got) !== JSON.stringify(at({ [name]: defaults }))) {
          reached = true;
          break;
        }
      }
      t.ok(reached, `${filePath.join('.')} sets ${enginePath.join('.')}`);
    };
    visit(section, [name], [name]);
  }
});

t.test('what the config decodes, the engines accept as it is', async (t) => {
  const cfg = parseConfigText(yaml`
    l4: { acceptProxyFrom: [10.1.2.3/8, "FD00::1"], idleTimeout: 1m, sniMaxHelloSize: 1KiB, healthCheck: { rise: 5 } }
    l7: { headerTimeout: 2s, maxBodySize: 1MiB, viaName: edge }
  `);
  t.same(resolveL4Options(cfg.l4), cfg.l4);
  t.same(resolveL7Options(cfg.l7), cfg.l7);
  t.same(cfg.l4.acceptProxyFrom, ['10.0.0.0/8', 'fd00::1/128'], 'CIDRs normalised');
  t.equal(cfg.l4.idleTimeoutMs, 60_000);
  t.equal(cfg.l4.sniMaxHelloBytes, 1024);
  t.same(cfg.l4.healthCheck, { ...L4_DEFAULTS.healthCheck, rise: 5 }, 'a nested section keeps the defaults it does not set');
  t.equal(cfg.l7.maxBodyBytes, 1 << 20);
});

interface OkRow {
  name: string;
  text: string;
  want: Record<string, unknown>;
}

const ok: OkRow[] = [
  {
    name: 'l4: PROXY from a front balancer, its timeout, and the hash',
    text: 'l4: { acceptProxyFrom: ["192.0.2.10"], proxyHeaderTimeout: 250ms, balance: leastconn, hashKey: source-ip }\n',
    want: { l4: { acceptProxyFrom: ['192.0.2.10/32'], proxyHeaderTimeoutMs: 250, balance: 'leastconn', hashKey: 'source-ip' } },
  },
  {
    name: 'l4: UDP and buffers, sizes in bytes or with units',
    text: 'l4: { udpIdleTimeout: 1m, udpMaxFlows: 10, udpSocketBufferSize: 0, readBufferSize: 16KiB, bulkThresholdSize: -1 }\n',
    want: { l4: { udpIdleTimeoutMs: 60_000, udpMaxFlows: 10, udpSocketBufferBytes: 0, readBufferBytes: 16_384, bulkThresholdBytes: -1 } },
  },
  {
    name: 'l4: drain at once, never eject passively, no default health check',
    text: 'l4: { drainTimeout: 0s, passiveFailures: 0, healthCheck: { enabled: false } }\n',
    want: { l4: { drainTimeoutMs: 0, passiveFailures: 0, healthCheck: { enabled: false, intervalMs: 2000 } } },
  },
  {
    name: 'dns: TCP limits, forwarder and cache',
    text: yaml`
      dns:
        tcpIdleTimeout: 30s
        maxTcpConnections: 10
        upstreamTimeout: 500ms
        upstreamDownTime: 1m
        holdTime: 0s
        cache: { maxEntries: 0, maxSize: 1MiB, maxTtl: 5m, maxNegativeTtl: 30s }
    `,
    want: {
      dns: {
        tcpIdleMs: 30_000,
        maxTcpConnections: 10,
        upstreamTimeoutMs: 500,
        upstreamDownMs: 60_000,
        holdMs: 0,
        cache: { maxEntries: 0, maxBytes: 1 << 20, maxTtlS: 300, maxNegativeTtlS: 30, maxEntryBytes: 16_384 },
      },
    },
  },
  {
    name: 'l7: body, target and header limits; retries; via',
    text: 'l7: { maxBodySize: 10MiB, maxTargetSize: 4KiB, maxHeaders: 50, minRetryConcurrency: 0, passiveFailures: 2, viaName: edge, timerResolution: 100ms }\n',
    want: {
      l7: {
        maxBodyBytes: 10 << 20,
        maxTargetBytes: 4096,
        maxHeaders: 50,
        minRetryConcurrency: 0,
        passiveFailures: 2,
        viaName: 'edge',
        timerResolutionMs: 100,
      },
    },
  },
];

t.test('loads', async (t) => {
  for (const row of ok) t.match(parseConfigText(row.text), row.want, row.name);
});

const fails: Array<{ name: string; text: string; issues: Array<[path: string, message: RegExp]> }> = [
  {
    name: 'l4: table size not prime, bad CIDR, zero idle timeout, unknown balance',
    text: yaml`
      l4:
        maglevTableSize: 65536
        acceptProxyFrom: [10/8]
        idleTimeout: 0s
        balance: random
    `,
    issues: [
      ['l4.maglevTableSize', /must be a prime/],
      ['l4.acceptProxyFrom[0]', /"10\/8" is not a CIDR/],
      ['l4.idleTimeout', /must be longer than 0s/],
      ['l4.balance', /must be one of maglev, leastconn, roundrobin/],
    ],
  },
  {
    name: 'l4: nested health check, sizes out of range (a number and a string)',
    text: yaml`
      l4:
        healthCheck: { rise: 0, interval: soon }
        sniMaxHelloSize: 100
        readBufferSize: "0KiB"
    `,
    issues: [
      ['l4.healthCheck.rise', /must be 1\.\.100/],
      ['l4.healthCheck.interval', /"soon" is not a duration/],
      ['l4.sniMaxHelloSize', /must be 512\.\.1048576/],
      ['l4.readBufferSize', /must be >= 1 bytes \(got 0\)/],
    ],
  },
  {
    name: 'l4: the engine name of a key is not the file name, and says which is',
    text: 'l4: { connectTimeoutMs: 5000 }\n',
    issues: [['l4.connectTimeoutMs', /unknown key "connectTimeoutMs" \(did you mean "connectTimeout"\?\)/]],
  },
  {
    name: 'dns: TTL caps in whole seconds, payload bounds, zero idle, unknown cache key',
    text: yaml`
      dns:
        cache: { maxTtl: 1500ms, maxEntrys: 5 }
        maxUdpPayload: 100
        tcpIdleTimeout: 0s
    `,
    issues: [
      ['dns.cache.maxTtl', /whole seconds/],
      ['dns.cache.maxEntrys', /did you mean "maxEntries"/],
      ['dns.maxUdpPayload', /must be 512\.\.65535/],
      ['dns.tcpIdleTimeout', /must be longer than 0s/],
    ],
  },
  {
    name: 'l7: bad size, Via not a token, timer resolution too coarse',
    text: yaml`
      l7:
        maxBodySize: 10XB
        viaName: "my proxy"
        timerResolution: 5s
    `,
    issues: [
      ['l7.maxBodySize', /"10XB" is not a size/],
      ['l7.viaName', /not a valid HTTP token/],
      ['l7.timerResolution', /must be at most 1s/],
    ],
  },
];

t.test('fails', async (t) => {
  for (const row of fails) {
    const issues = issuesOf(row.text);
    t.same(
      issues.map((i) => i.path),
      row.issues.map(([p]) => p),
      `${row.name}: paths`,
    );
    row.issues.forEach(([path, message], n) => t.match(issues[n]?.message, message, `${row.name}: ${path}`));
  }
});
