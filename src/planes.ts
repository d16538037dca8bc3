/**
 * The data planes `portico up` runs, in start order (stop order is the reverse). Like CoreDNS's
 * plugin.cfg, this list is the one place a data plane is registered: a later feature adds one
 * import and one line here, and nothing else in the composition root changes.
 *
 * A factory gets the appliance's shared parts and returns its plane, or `undefined` when the config
 * leaves it switched off.
 */
import type { RouteRegistrar } from './api/types.js';
import { createDnsPlane, registerDnsApi } from './dns/index.js';
import { createL4Plane, registerL4Api } from './l4/index.js';
import { createL7Plane } from './l7/plane.js';
import type { PorticoConfig } from './config/index.js';
import type { DataPlane } from './model/plane.js';
import type { Pki } from './pki/index.js';
import type { Store } from './store/types.js';
import type { Logger } from './telemetry/log.js';
import type { Registry } from './telemetry/metrics.js';

export interface PlaneContext {
  config: PorticoConfig;
  logger: Logger;
  registry: Registry;
  store: Store;
  dataDir: string;
  /** The cluster CA: certificates for `tls.auto`, secrets. */
  pki: Pki;
  /** Add an admin api resource under /v1/ (e.g. GET /v1/vips): the api server's `route()`. */
  addApiRoute: RouteRegistrar;
}

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
      const plane = createL4Plane({ listenAddress: ctx.config.vips.listen, logger: ctx.logger, registry: ctx.registry });
      registerL4Api(ctx.addApiRoute, plane);
      return plane;
    },
  },
  {
    name: 'dns',
    create: (ctx) => {
      const plane = createDnsPlane({
        config: ctx.config.dns,
        logger: ctx.logger,
        registry: ctx.registry,
        options: { zoneUpstreams: ctx.config.dns.zoneUpstreams ?? {} },
      });
      registerDnsApi(ctx.addApiRoute, plane);
      return plane;
    },
  },
];
