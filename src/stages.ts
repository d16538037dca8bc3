/**
 * The table stages, in the order a table goes through them between the aggregator and the data planes
 * (src/aggregator/pipeline.ts runs them); beside src/providers/index.ts and src/planes.ts, the one place a
 * stage is registered. What comes out of the last stage is exactly what the planes serve and
 * `GET /v1/table` shows.
 */
import type { PartContext } from './context.js';
import type { TableStage } from './aggregator/pipeline.js';
import type { RoutingTable, TableChange, VipEntry } from './model/types.js';
import { VipAllocator } from './vips/index.js';

export interface StageRegistration {
  name: string;
  create: (ctx: PartContext) => TableStage | undefined;
}

/** How often the VIP stage looks again at addresses that moved without a table change. */
export const VIP_RECHECK_MS = 60_000;

export const STAGES: StageRegistration[] = [
  {
    // Named VIPs get their stable addresses (recorded in the store) before any plane sees them: L4 binds
    // them, DNS answers them. Between table changes an address can also be released (after its grace
    // period) or taken over from another instance: the stage looks again every minute, and a changed
    // address is a new served version.
    name: 'vips',
    create: (ctx) => {
      const vips = new VipAllocator(ctx.store, { logger: ctx.logger });
      return {
        name: 'vips',
        apply: (table, change) => vips.annotate(table, change),
        fingerprint: (table) => addressesOf(table.vips),
        watch: (changed) => {
          const timer = setInterval(changed, VIP_RECHECK_MS);
          timer.unref();
          return () => clearInterval(timer);
        },
      };
    },
  },
  {
    // Hosts of routes on `tls.auto` entrypoints get certificates from the cluster CA; the L7 plane serves
    // them as they are issued and renewed (ctx.pki.auto.onChange). The table passes on unchanged; a change
    // that leaves routes and entrypoints alone needs no look.
    name: 'certs',
    create: (ctx) => ({
      name: 'certs',
      apply: (table: RoutingTable, change?: TableChange) => {
        if (!change || change.routes || change.entrypoints) ctx.pki.auto.update(table);
        return table;
      },
    }),
  },
];

/** The VIP addresses of a table, as text (kept per VIP list: tables that share one are not walked again). */
const addressText = new WeakMap<readonly VipEntry[], string>();
function addressesOf(vips: readonly VipEntry[]): string {
  let text = addressText.get(vips);
  if (text === undefined) addressText.set(vips, (text = vips.map((v) => v.ip ?? '').join(',')));
  return text;
}
