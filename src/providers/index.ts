/**
 * The feeds `portico up` runs, in start order (stop order is the reverse); beside src/planes.ts and
 * src/stages.ts, the one place a provider is registered. `create` builds it from the appliance's shared
 * parts and the start config, or returns `undefined` when the config leaves it switched off.
 *
 * Every provider hands the aggregator what it knows and nothing else: whole snapshots, or what changed
 * (src/providers/types.ts; marathon, consul, overlay and shared send only what differs: src/providers/sent.ts).
 */
import path from 'node:path';
import type { PartContext } from '../context.js';
import { ConsulProvider } from './consul/index.js';
import { FileProvider } from './file/index.js';
import { AppsDirProvider, MarathonProvider } from './marathon/index.js';
import { OverlayProvider } from './overlay/index.js';
import { SharedConfigProvider } from './store/shared.js';
import type { Provider } from './types.js';

export interface ProviderRegistration {
  name: string;
  create: (ctx: PartContext) => Provider | undefined;
}

export const PROVIDERS: ProviderRegistration[] = [
  {
    // The config file's services, routes and entrypoints (priority 100).
    name: 'file',
    create: (ctx) =>
      new FileProvider({
        path: ctx.configPath,
        logger: ctx.logger,
        onConfig: (cfg) => ctx.configAccepted(cfg),
        ...(ctx.configText !== undefined && { parsed: { text: ctx.configText, config: ctx.config } }),
      }),
  },
  {
    // The shared config pushed through any instance's api (PUT /v1/config/shared), from the store.
    name: 'shared',
    create: (ctx) => new SharedConfigProvider({ store: ctx.store, logger: ctx.logger }),
  },
  {
    // Marathon app definitions kept in files (`apps.dir`, relative to the config file's directory).
    name: 'apps',
    create: (ctx) => {
      const { apps, marathon: m } = ctx.config;
      return new AppsDirProvider({
        dir: path.resolve(path.dirname(ctx.configPath), apps.dir),
        groups: apps.groups,
        ...(m && {
          framework: m.framework,
          httpEntrypoint: m.httpEntrypoint,
          httpsEntrypoint: m.httpsEntrypoint,
          defaultBindAddress: m.bindAddress,
          bindServicePorts: m.bindServicePorts,
          strictMode: m.strictMode,
        }),
        logger: ctx.logger,
      });
    },
  },
  {
    // A live Marathon api (any implementation of /v2/apps and /v2/events).
    name: 'marathon',
    create: (ctx) => {
      const m = ctx.config.marathon;
      if (!m) return undefined;
      return new MarathonProvider({
        url: m.urls,
        groups: m.groups,
        framework: m.framework,
        httpEntrypoint: m.httpEntrypoint,
        httpsEntrypoint: m.httpsEntrypoint,
        defaultBindAddress: m.bindAddress,
        bindServicePorts: m.bindServicePorts,
        strictMode: m.strictMode,
        priority: m.priority,
        ...(m.username !== undefined && m.password !== undefined && { auth: { username: m.username, password: m.password } }),
        ...(m.token !== undefined && { token: m.token }),
        logger: ctx.logger,
        registry: ctx.registry,
      });
    },
  },
  {
    // Container leases of every agent (portico-cni ADDs that name a service) become endpoints.
    name: 'overlay',
    create: (ctx) => (ctx.config.overlay.enabled ? new OverlayProvider({ store: ctx.store, logger: ctx.logger }) : undefined),
  },
  {
    // The Consul catalog.
    name: 'consul',
    create: (ctx) => {
      const c = ctx.config.consul;
      if (!c) return undefined;
      const token = c.token ?? process.env.CONSUL_HTTP_TOKEN;
      return new ConsulProvider({
        url: c.url,
        ...(token !== undefined && { token }),
        ...(c.datacenter !== undefined && { datacenter: c.datacenter }),
        framework: c.framework,
        entrypoint: c.entrypoint,
        exposedByDefault: c.exposedByDefault,
        includeWarning: c.includeWarning,
        ignoreServices: c.ignoreServices,
        priority: c.priority,
        logger: ctx.logger,
      });
    },
  },
];
