/**
 * A generated config of the size the scale goals name: N services with M endpoints each (10,000 × 10 is
 * ~4 MB), written the way a generator would write it: block mappings for services, a block list of flow
 * mappings for endpoints (IPv4 plain; every fifth service's last one IPv6, quoted), some weights, labels, health checks and balance
 * settings, one VIP and one route per service. Used by the fast/slow path equivalence test and by
 * `npm run bench -- config`.
 */
export function bigConfigYaml(services: number, endpointsPerService: number): string {
  const out: string[] = [
    `# generated: ${services} services, ${services * endpointsPerService} endpoints`,
    'entrypoints:',
    '  web: { listen: 127.0.0.1:8080 }',
    '  websecure: { listen: 127.0.0.1:8443, tls: { auto: true } }',
    'services:',
  ];
  for (let s = 0; s < services; s++) {
    out.push(`  app${s}:`);
    if (s % 7 === 0) out.push('    framework: Data.Services');
    out.push('    endpoints:');
    for (let e = 0; e < endpointsPerService; e++) {
      const n = s * endpointsPerService + e;
      const address =
        s % 5 === 0 && e === endpointsPerService - 1
          ? `"fd00::${(n >> 16).toString(16)}:${(n & 0xffff).toString(16)}"`
          : `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
      const extra = e % 4 === 1 ? `, weight: ${e % 3}` : e === 2 ? ', labels: {zone: a}' : '';
      out.push(`    - {address: ${address}, port: ${8000 + e}${extra}}`);
    }
    if (s % 4 === 2) out.push('    balance: hash(header:x-user)');
    if (s % 3 === 0) out.push('    health: {http: /healthz, interval: 2s, timeout: 500ms}');
    out.push(`    vips: [{name: app${s}, port: 80}]`);
    if (s % 5 === 0) out.push(`    labels: {team: t${s % 50}, tier: "${s % 2 ? 'back' : 'front'}"}`);
  }
  out.push('routes:');
  for (let s = 0; s < services; s++)
    out.push(`- {entrypoint: ${s % 2 ? 'web' : 'websecure'}, host: app${s}.example.test, service: app${s}}`);
  return `${out.join('\n')}\n`;
}
