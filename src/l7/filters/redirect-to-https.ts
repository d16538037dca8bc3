/**
 * The redirect-to-https filter (`redirectToHttps`, marathon-lb's `HAPROXY_{n}_REDIRECT_TO_HTTPS`): a
 * request that arrived over plain HTTP is answered 308 with the same host (its port dropped), path and
 * query under https://; over TLS the request goes on. It runs first (filters/index.ts), so credentials
 * are never checked on a connection that could carry them in clear.
 */
import { FilterStatus, type RequestFilter } from './types.js';

export const redirectToHttps: RequestFilter = {
  name: 'redirect-to-https',
  appliesTo: (route) => route.redirectToHttps === true,
  onRequest(ex, head) {
    if (ex.conn.ep.tls) return FilterStatus.Continue;
    const host = (head.host ?? '').replace(/:\d+$/, '');
    ex.respondLocal(308, 'redirect-https', `location: https://${host}${ex.pathAndQuery}\r\n`);
    return FilterStatus.Answered;
  },
};
