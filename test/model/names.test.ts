import t from 'tap';
import { MAX_LABEL, isValidDnsName, isValidRouteHost, splitVipLabel, toFrameworkName, toLabel, toVipName } from '../../src/model/names.js';

t.test('toLabel: Mesos-DNS task labels', async (t) => {
  const cases: Array<[string, string]> = [
    ['My_App.v2', 'my-app-v2'],
    ['web', 'web'],
    ['WEB', 'web'],
    ['/grp/app', 'grp-app'],
    ['-lead-and-trail-', 'lead-and-trail'],
    ['a b\tc', 'a-b-c'],
    ['ünïcode', 'n-code'],
    ['', ''],
    ['___', ''],
  ];
  for (const [input, want] of cases) t.equal(toLabel(input), want, JSON.stringify(input));
});

t.test('toLabel: at most 63 bytes, never ending in "-" after the cut', async (t) => {
  const long = 'a'.repeat(100);
  t.equal(toLabel(long), 'a'.repeat(MAX_LABEL));
  t.equal(toLabel(long).length, 63);
  // The 63rd character is "-": cut there, then trimmed.
  const dashAtCut = `${'b'.repeat(62)}_tail`;
  t.equal(toLabel(dashAtCut), 'b'.repeat(62));
  t.ok(isValidDnsName(toLabel(`${'x'.repeat(70)}.y`)));
});

t.test('toFrameworkName keeps dots, labels each part', async (t) => {
  t.equal(toFrameworkName('marathon'), 'marathon');
  t.equal(toFrameworkName('Marathon-User.Team_A'), 'marathon-user.team-a');
  t.equal(toFrameworkName('a..b.'), 'a.b');
  t.equal(toFrameworkName('---'), '');
});

t.test('toVipName: dcos-l4lb sanitising', async (t) => {
  const cases: Array<[string, string]> = [
    ['/grp/app', 'grpapp'],
    ['web', 'web'],
    ['My_Vip', 'my-vip'],
    ['/infra/syslog', 'infrasyslog'],
    ['a.b', 'a.b'],
    ['/', ''],
  ];
  for (const [input, want] of cases) t.equal(toVipName(input), want, JSON.stringify(input));
});

t.test('isValidDnsName / isValidRouteHost', async (t) => {
  for (const ok of ['a', 'app.example.test', 'x-1.y', 'example.test.', `${'a'.repeat(63)}.b`]) t.ok(isValidDnsName(ok), ok);
  for (const bad of ['', '.', '-a', 'a-', 'a..b', 'a_b', `${'a'.repeat(64)}.b`, 'a b', `${'a.'.repeat(127)}ab`]) {
    t.notOk(isValidDnsName(bad), JSON.stringify(bad));
  }
  for (const ok of ['*', '*.example.test', 'app.example.test']) t.ok(isValidRouteHost(ok), ok);
  for (const bad of ['*.', 'a.*.b', '**.x', '*example.test', 'app.*']) t.notOk(isValidRouteHost(bad), bad);
});

t.test('splitVipLabel', async (t) => {
  t.same(splitVipLabel('[fd00::1]:80'), { target: 'fd00::1', port: 80 });
  t.same(splitVipLabel('/web:80'), { target: '/web', port: 80 });
  t.same(splitVipLabel('web:8080'), { target: 'web', port: 8080 });
  t.same(splitVipLabel('10.1.2.3:5432'), { target: '10.1.2.3', port: 5432 });
  t.same(splitVipLabel('web:65535'), { target: 'web', port: 65535 });
  for (const bad of ['web', ':80', 'web:', 'web:0', 'web:65536', 'web:8o', 'web:123456']) {
    t.equal(splitVipLabel(bad), undefined, JSON.stringify(bad));
  }
});
