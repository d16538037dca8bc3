/**
 * The request filters, in the order they run: this list IS the order (as CoreDNS's plugin.cfg is its
 * chain). Every request routed to a route runs the filters of this list that the route needs, top to
 * bottom, before an endpoint is picked; the first that answers ends it (types.ts has the contract).
 *
 *  1. redirect-to-https  308 to https:// on plain HTTP — first, so credentials never cross plain HTTP
 *                        to be checked.
 *  2. allow-list         403 outside the route's CIDRs — before auth: a client outside the list learns
 *                        nothing of the realm and costs no password hashing.
 *  3. basic-auth         401 with the realm, or 429 when the hashing budget is spent.
 *  4. body-limit         413 when the declared Content-Length is over the limit — after the checks
 *                        above, so a client that may not send learns nothing of the limit.
 *
 * A route's filters are chosen when the table is compiled (requestFilters, called by the plane for
 * every route): a route carries the array of the filters it needs, in this order, and a route that
 * needs none shares one empty array. HSTS is response-side and not in this list (hsts.ts).
 */
import type { Route } from '../../model/types.js';
import type { RouteRuntime } from '../proxy.js';
import { allowList } from './allow-list.js';
import { basicAuth } from './basic-auth.js';
import { bodyLimit } from './body-limit.js';
import { redirectToHttps } from './redirect-to-https.js';
import type { RequestFilter } from './types.js';

export const REQUEST_FILTERS: readonly RequestFilter[] = [redirectToHttps, allowList, basicAuth, bodyLimit];

/** The filters of a route that needs none. */
export const NO_FILTERS: readonly RequestFilter[] = [];

/** The filters `route` runs, in REQUEST_FILTERS order; `rt` is its compiled runtime (`filters` aside). */
export function requestFilters(route: Route, rt: RouteRuntime): readonly RequestFilter[] {
  let out: RequestFilter[] | undefined;
  for (const f of REQUEST_FILTERS) if (f.appliesTo(route, rt)) (out ??= []).push(f);
  return out ?? NO_FILTERS;
}
