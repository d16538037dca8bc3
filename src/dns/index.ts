/**
 * The DNS data plane: authoritative for the DC/OS names of the routing table (Mesos-DNS's `.mesos`,
 * dcos-dns's `thisdcos.directory`, and the config's own domains), a caching forwarder for the rest,
 * over UDP and TCP, and the Mesos-DNS-compatible HTTP lookup api. See README.md beside this file.
 */
export { createDnsPlane, DnsPlane, type DnsAddress, type DnsPlaneOptions } from './plane.js';
export type { EnumerateResult, HostRecord, ServiceRecord } from './describe.js';
export { DNS_DEFAULTS, dnsSettings, type DnsOptions, type DnsPlaneConfig, type DnsSettings } from './settings.js';
export { registerDnsApi, MESOS_DNS_VERSION } from './api.js';
export { canonicalLabel, DCOS_ZONE, MESOS_ZONE, hash5 } from './names.js';
