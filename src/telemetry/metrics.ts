/**
 * The Prometheus registry shared by every part. Metric names are declared once per component, at
 * start-up, under the `portico_` prefix; nothing creates a metric on a request path.
 */
import client from 'prom-client';

export type Registry = client.Registry;
export { client as prom };

/** A fresh registry with the default process metrics (`portico_process_*`, `portico_nodejs_*`). */
export function createRegistry(opts: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new client.Registry();
  if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: registry, prefix: 'portico_' });
  return registry;
}

/**
 * Get-or-create: components that may be constructed twice against one registry (tests, a data plane
 * re-registered) reuse the existing metric instead of throwing on a duplicate name.
 */
export function metric<T extends client.Metric<string>>(registry: Registry, name: string, make: () => T): T {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as T;
  const m = make();
  registry.registerMetric(m);
  return m;
}
