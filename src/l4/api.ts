/**
 * `GET /v1/vips`: the L4 plane's VIPs and SNI-passthrough entrypoints as it serves them now — the address
 * each VIP is served on and the listener it is bound to (or why it is not), its endpoints with their
 * state (serving, draining, unhealthy, down, ejected) and open connections, and its counters.
 */
import type { RouteRegistrar } from '../api/types.js';
import type { L4Description } from './describe.js';

const endpointSchema = {
  type: 'object',
  properties: {
    address: { type: 'string' },
    port: { type: 'integer' },
    weight: { type: 'integer' },
    health: { type: 'string', description: 'health the table gives; "removed" when no longer listed (draining out)' },
    state: { type: 'string', enum: ['serving', 'draining', 'unhealthy', 'down', 'ejected'] },
    activeCheck: { type: 'string', enum: ['none', 'up', 'down'] },
    active: { type: 'integer' },
    connections: { type: 'integer' },
    bytes: { type: 'object', properties: { in: { type: 'integer' }, out: { type: 'integer' } } },
    failures: { type: 'object', properties: { connect: { type: 'integer' }, timeout: { type: 'integer' } } },
  },
};

/**
 * Register `GET /v1/vips` on the admin api. The dependency points from the plane to the api's `route`
 * function only (no import of the server at run time).
 */
export function registerL4Api(route: RouteRegistrar, plane: { describe(): L4Description | Promise<L4Description> }): void {
  route('GET', '/v1/vips', () => plane.describe(), {
    doc: {
      summary: 'L4 VIPs and SNI-passthrough entrypoints as served now',
      description:
        'Each VIP with the address it is served on (ip), the listener it is bound to (on its own address when that is configured on this machine, else on vips.listen), its endpoints with their state and open connections, and counters (connections, bytes, refusals by reason; UDP flows and datagrams).',
      tags: ['vips'],
      responses: {
        200: {
          description: 'The VIPs of the table the plane serves',
          schema: {
            type: 'object',
            properties: {
              version: { type: 'integer' },
              listenAddress: { type: 'string' },
              vips: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    key: { type: 'string' },
                    protocol: { type: 'string', enum: ['tcp', 'udp'] },
                    name: { type: 'string' },
                    framework: { type: 'string' },
                    address: { type: 'string' },
                    ip: { type: ['string', 'null'] },
                    port: { type: 'integer' },
                    service: { type: 'string' },
                    proxyProtocol: { type: 'string', enum: ['v1', 'v2'] },
                    balance: { type: 'string', enum: ['maglev', 'leastconn', 'roundrobin'] },
                    listener: { type: ['string', 'null'] },
                    binding: { type: ['string', 'null'], enum: ['vip-address', 'listen-address', null] },
                    error: { type: 'string' },
                    connections: { type: 'object', properties: { active: { type: 'integer' }, total: { type: 'integer' } } },
                    bytes: { type: 'object', properties: { in: { type: 'integer' }, out: { type: 'integer' } } },
                    rejected: { type: 'object', additionalProperties: { type: 'integer' } },
                    udp: {
                      type: 'object',
                      properties: { flows: { type: 'integer' }, datagramsIn: { type: 'integer' }, datagramsOut: { type: 'integer' } },
                    },
                    endpoints: { type: 'array', items: endpointSchema },
                  },
                },
              },
              sni: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    entrypoint: { type: 'string' },
                    listener: { type: ['string', 'null'] },
                    error: { type: 'string' },
                    routes: {
                      type: 'array',
                      items: {
                        type: 'object',
                        properties: {
                          host: { type: 'string' },
                          service: { type: 'string' },
                          endpoints: { type: 'array', items: endpointSchema },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
  });
}
