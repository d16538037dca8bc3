import t from 'tap';
import { restartOnlyChanges } from '../src/boot.js';
import { parseConfigText } from '../src/config/load.js';

t.test('a config change names the sections only a restart applies; routes, services and entrypoints are live', async (t) => {
  const started = parseConfigText('services:\n  web:\n    endpoints: [{address: 127.0.0.1, port: 8080}]\n');
  const live = parseConfigText(
    'services:\n  web:\n    endpoints: [{address: 127.0.0.1, port: 8081}]\nroutes: [{entrypoint: web, host: a.example, service: web}]\nentrypoints:\n  web:\n    listen: "127.0.0.1:8000"\n',
  );
  t.same(restartOnlyChanges(started, live), [], 'the file feed applies these');
  const engines = parseConfigText(
    'l7:\n  maxHeaderSize: 32KiB\nl4:\n  connectTimeout: 2s\ndns:\n  ttl: 17s\napi:\n  listen: "127.0.0.1:9911"\n',
  );
  t.same(restartOnlyChanges(started, engines), ['api', 'dns', 'l4', 'l7'], 'the planes read their engine settings at start');
  t.same(restartOnlyChanges(started, parseConfigText('vips:\n  listen: 127.0.0.2\n')), ['vips']);
});
