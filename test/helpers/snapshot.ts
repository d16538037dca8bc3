/** Builders for model objects in tests: the least that makes a valid snapshot, overridable. */
import type { Endpoint, Entrypoint, Service, Snapshot } from '../../src/model/types.js';

export function endpoint(address: string, port: number, extra: Partial<Endpoint> = {}): Endpoint {
  return { address, port, weight: 1, health: 'unknown', labels: {}, ...extra };
}

export function service(endpoints: Endpoint[], extra: Partial<Omit<Service, 'id' | 'provider'>> = {}): Omit<Service, 'id' | 'provider'> {
  return { name: 'svc', framework: 'marathon', endpoints, balance: { algorithm: 'roundrobin' }, vips: [], labels: {}, ...extra };
}

export function entrypoint(name: string, listen: string): Entrypoint {
  return { name, listen, trustedProxies: [] };
}

export function snapshot(provider: string, parts: Partial<Omit<Snapshot, 'provider'>> = {}): Snapshot {
  return { provider, services: {}, routes: [], entrypoints: {}, ...parts };
}

/** N services with M endpoints each, for scale tests and benchmarks. */
export function bigSnapshot(provider: string, services: number, endpointsPerService: number): Snapshot {
  const snap = snapshot(provider, { entrypoints: { web: entrypoint('web', '127.0.0.1:0') } });
  for (let s = 0; s < services; s++) {
    const eps: Endpoint[] = [];
    for (let e = 0; e < endpointsPerService; e++) {
      const n = s * endpointsPerService + e;
      eps.push(endpoint(`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, 8000 + (e % 1000), { task: `app${s}` }));
    }
    const name = `app${s}`;
    snap.services[name] = service(eps, { name, vips: [{ name, port: 80, protocol: 'tcp' }] });
    snap.routes.push({ entrypoint: 'web', host: `app${s}.example.test`, path: '/', pathMatch: 'prefix', service: name });
  }
  return snap;
}
