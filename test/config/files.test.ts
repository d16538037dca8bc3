/** The shipped config files: config/portico.yaml and every example must load. */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import t from 'tap';
import { configToSnapshot, loadConfigFile, parseConfigText } from '../../src/config/index.js';
import { parseListen } from '../../src/model/parse.js';

const root = resolve(__dirname, '../..');

/** The example of ARCHITECTURE.md's "The config file" contract, verbatim. */
const CONTRACT = `# config/portico.yaml — what \`npm start\` loads (override with --config FILE or PORTICO_CONFIG)
data: ./data                         # embedded store journal, CA, tokens (created 0700)
store: embedded                      # or redis://127.0.0.1:6379/0, redis-sentinel://h1:26379,h2:26379/mymaster
api:   { listen: 127.0.0.1:9900 }    # admin REST + /metrics + UI; bearer token in <data>/api-token (0600)
entrypoints:                         # L7 listeners
  web:       { listen: 127.0.0.1:8080 }
  websecure: { listen: 127.0.0.1:8443, tls: { auto: true } }   # certs from the cluster CA by SNI
dns:   { listen: 127.0.0.1:8053, upstreams: [], allowRecursionFrom: [127.0.0.0/8, ::1/128] }
vips:  { listen: 127.0.0.1 }         # address L4 VIPs bind to when no VIP address is routable here
services:
  web:
    framework: marathon              # DNS: web.marathon.mesos, _web._tcp.marathon.mesos
    endpoints:
      - { address: 127.0.0.1, port: 9001 }
      - { address: 127.0.0.1, port: 9002, weight: 2 }
    balance: roundrobin              # roundrobin | weighted | leastconn | p2c | hash(header|cookie|ip) | sticky
    health: { http: /healthz, interval: 2s, rise: 2, fall: 3 }
    vips: [ { name: web, port: 80, protocol: tcp } ]   # web.marathon.l4lb.thisdcos.directory:80
routes:
  - { entrypoint: web, host: app.example.test, path: /, service: web }
`;

t.test('config/portico.yaml is the contract example', async (t) => {
  const file = join(root, 'config/portico.yaml');
  const shipped = await loadConfigFile(file);
  const contract = parseConfigText(CONTRACT, { file });
  t.same(shipped, contract);
  t.equal(shipped.api.listen, '127.0.0.1:9900');
  t.same(Object.keys(shipped.entrypoints), ['web', 'websecure']);
  t.same(
    shipped.services.web?.endpoints.map((e) => e.port),
    [9001, 9002],
  );
  t.equal(shipped.routes.length, 1);
});

t.test('the keys config/portico.yaml shows commented out are the defaults: uncommented, the file loads the same', async (t) => {
  const file = join(root, 'config/portico.yaml');
  const text = await readFile(file, 'utf8');
  const commented = /^(\s*)# (\s*[a-zA-Z0-9]+:)/;
  const lines = text.split('\n');
  const keys = lines.filter((l) => commented.test(l));
  t.ok(keys.length >= 10, `${keys.length} commented keys`);
  const uncommented = lines.map((l) => l.replace(commented, '$1$2')).join('\n');
  t.same(parseConfigText(uncommented, { file }), await loadConfigFile(file));
});

t.test('config/portico.yaml binds loopback only, on distinct ports', async (t) => {
  const cfg = await loadConfigFile(join(root, 'config/portico.yaml'));
  const listens = [cfg.api.listen, cfg.dns.listen, ...Object.values(cfg.entrypoints).map((e) => e.listen)];
  for (const l of listens) {
    const p = parseListen(l);
    t.ok(p.ok && p.value.host === '127.0.0.1', `${l} is loopback`);
  }
  t.equal(new Set(listens).size, listens.length, 'distinct (listen addresses are normalised)');
});

t.test('every file in config/examples loads', async (t) => {
  const dir = join(root, 'config/examples');
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
  t.ok(files.length >= 2, 'there are examples');
  for (const f of files) {
    const cfg = await loadConfigFile(join(dir, f));
    const snap = configToSnapshot(cfg, 'file');
    t.ok(Object.keys(snap.services).length > 0, `${f}: loads, with services`);
  }
});
