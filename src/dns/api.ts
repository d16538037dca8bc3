/**
 * The Mesos-DNS-compatible HTTP lookup api, on the admin api server (so it carries the admin api's
 * bearer token unless `auth: false`):
 *
 *   GET /v1/dns/version              {"Service":"Mesos-DNS","URL":…,"Version":…} (+ "Implementation")
 *   GET /v1/dns/config               Mesos-DNS's Config fields that mean something here, plus ours
 *   GET /v1/dns/hosts/:host          [{"host":"web.marathon.mesos.","ip":"10.0.0.1"}, …]
 *   GET /v1/dns/services/:service    [{"service":"_web._tcp.marathon.mesos","host":"web-xxxxx.marathon.mesos.","ip":"10.0.0.1","port":"31000"}, …]
 *   GET /v1/dns/enumerate            {"frameworks":[{"name","tasks":[{"name","id","records":[{"name","host","rtype"}]}]}]}
 *   GET /v1/hosts/:host, GET /v1/services/:service   the same two, at the paths Mesos-DNS serves them
 *
 * As Mesos-DNS does (resolver.go RestHost/RestService), a miss is not a 404 but one empty row:
 * hosts `[{"host":"","ip":""}]`, services `[{"service":"","host":"","ip":"","port":""}]` — scripts test
 * for it. Ports are strings. `.*` wildcards are stripped from the name; a trailing dot is optional.
 * (/v1/version, /v1/config and /v1/enumerate stay under /v1/dns/: the first two are the admin api's own.)
 */
import type { RouteOptions, RouteRegistrar } from '../api/types.js';
import type { EnumerateResult, HostRecord, ServiceRecord } from './describe.js';

export const MESOS_DNS_VERSION = 'v0.6.0';

const hostRow = { type: 'object', properties: { host: { type: 'string' }, ip: { type: 'string' } }, required: ['host', 'ip'] };
const serviceRow = {
  type: 'object',
  properties: {
    service: { type: 'string' },
    host: { type: 'string' },
    ip: { type: 'string' },
    port: { type: 'string', description: 'A string, as Mesos-DNS sends it' },
  },
  required: ['service', 'host', 'ip', 'port'],
};

/**
 * Add the lookup routes. `route` must be callable on its own (bind it: `api.route.bind(api)`, or the
 * composition root's `addApiRoute`).
 */
/**
 * What the resources ask of the DNS plane: the plane itself in its own process, or its answers relayed from
 * a data-plane worker (src/planes.ts).
 */
export interface DnsQueries {
  hosts(name: string): HostRecord[] | Promise<HostRecord[]>;
  services(name: string): ServiceRecord[] | Promise<ServiceRecord[]>;
  enumerate(): EnumerateResult | Promise<EnumerateResult>;
  mesosConfig(): Record<string, unknown> | Promise<Record<string, unknown>>;
}

export function registerDnsApi(route: RouteRegistrar, plane: DnsQueries, opts: { auth?: boolean } = {}): void {
  const base: RouteOptions = opts.auth === undefined ? {} : { auth: opts.auth };
  const tags = ['dns'];

  route(
    'GET',
    '/v1/dns/version',
    () => ({
      Service: 'Mesos-DNS',
      URL: 'https://github.com/mesosphere/mesos-dns',
      Version: MESOS_DNS_VERSION,
      Implementation: 'portico',
    }),
    { ...base, doc: { summary: 'Mesos-DNS version (compatibility: the api Portico answers like)', tags } },
  );

  route('GET', '/v1/dns/config', () => plane.mesosConfig(), {
    ...base,
    doc: {
      summary:
        'DNS configuration in Mesos-DNS /v1/config shape (TTL, Port, Domain, Resolvers, SOA fields) plus Domains and AllowRecursionFrom',
      tags,
    },
  });

  const hosts = async (name: string): Promise<unknown> => {
    const rows = await plane.hosts(name);
    return rows.length > 0 ? rows : [{ host: '', ip: '' }];
  };
  const services = async (name: string): Promise<unknown> => {
    const rows = await plane.services(name);
    return rows.length > 0 ? rows : [{ service: '', host: '', ip: '', port: '' }];
  };
  const hostDoc = {
    summary: 'A/AAAA records of a name we are authoritative for, Mesos-DNS style',
    description: 'A miss answers `[{"host":"","ip":""}]` (not 404), as Mesos-DNS does.',
    tags,
    responses: { '200': { description: 'Rows, or one empty row', schema: { type: 'array', items: hostRow } } },
  };
  const serviceDoc = {
    summary: "SRV records of a service name (`_web._tcp.marathon.mesos`), each with its target's address, Mesos-DNS style",
    description: 'A miss answers `[{"service":"","host":"","ip":"","port":""}]` (not 404), as Mesos-DNS does. Ports are strings.',
    tags,
    responses: { '200': { description: 'Rows, or one empty row', schema: { type: 'array', items: serviceRow } } },
  };
  for (const prefix of ['/v1/dns', '/v1']) {
    route('GET', `${prefix}/hosts/:host`, (ctx) => hosts(ctx.param('host')), { ...base, doc: hostDoc });
    route('GET', `${prefix}/services/:service`, (ctx) => services(ctx.param('service')), { ...base, doc: serviceDoc });
  }

  route('GET', '/v1/dns/enumerate', () => plane.enumerate(), {
    ...base,
    doc: { summary: 'Every framework, task and DNS record, in Mesos-DNS /v1/enumerate shape', tags },
  });
}
