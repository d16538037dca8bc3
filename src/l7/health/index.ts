export { HealthChecker } from './active.js';
export type { DownEndpoint, EndpointHealth, HealthCheckerOptions, HealthCheckerStats, HealthTransition, UpstreamLookup } from './active.js';
export { OutlierDetector } from './passive.js';
export type { EjectionEvent, OutlierOptions, OutlierStats } from './passive.js';
export { probe } from './probe.js';
export type { ProbeFn, ProbeHandle, ProbeReason, ProbeResult, ProbeTarget } from './probe.js';
