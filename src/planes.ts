/**
 * The data planes `portico up` runs, in start order (stop order is the reverse). Like CoreDNS's
 * plugin.cfg, this list is the one place a data plane is registered: a new plane is one entry here (its
 * import and a `create` that builds it from the shared parts), and the composition root does not change.
 *
 * `create` returns the plane, or `undefined` when the config leaves it switched off. Every plane is fed
 * the served tables of src/aggregator/pipeline.ts and nothing else (the data-plane contract,
 * src/model/plane.ts).
 */
import { createDnsPlane, registerDnsApi } from './dns/index.js';
import { createL4Plane, registerL4Api } from './l4/index.js';
import { createL7Plane } from './l7/plane.js';
import type { PartContext } from './context.js';
import type { DataPlane } from './model/plane.js';

/** What a plane is created from: the appliance's shared parts (src/context.ts). */
export type PlaneContext = PartContext;

export interface PlaneRegistration {
  name: string;
  create: (ctx: PlaneContext) => DataPlane | undefined;
}

export const PLANES: PlaneRegistration[] = [
  {
    name: 'l7',
    create: (ctx) => {
      const plane = createL7Plane({
        logger: ctx.logger,
        registry: ctx.registry,
        options: {
          ...ctx.config.l7,
          // PORTICO_ACCESS_LOG=off overrides the file (benchmarks, where peers log nothing either)
          accessLog: ctx.config.l7.accessLog && process.env.PORTICO_ACCESS_LOG !== 'off',
        },
      });
      // tls.auto entrypoints serve what the cluster CA issued, renewals included.
      ctx.pki.auto.onChange((certs) => plane.setAutoCertificates(certs));
      ctx.pki.sessionKeys.onChange((keys) => plane.setSessionKeys(keys)); // sticky secret and ticket keys, shared through the store
      return plane;
    },
  },
  {
    // Before dns: a VIP's listener is programmed before its name is published (a race dcos-net had).
    name: 'l4',
    create: (ctx) => {
      const plane = createL4Plane({
        listenAddress: ctx.config.vips.listen,
        options: ctx.config.l4,
        logger: ctx.logger,
        registry: ctx.registry,
      });
      registerL4Api(ctx.addApiRoute, plane);
      return plane;
    },
  },
  {
    name: 'dns',
    create: (ctx) => {
      const plane = createDnsPlane({ config: ctx.config.dns, logger: ctx.logger, registry: ctx.registry });
      registerDnsApi(ctx.addApiRoute, plane);
      return plane;
    },
  },
];
