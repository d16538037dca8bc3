/**
 * The body limit filter (`maxBodyBytes` of the route, else `l7.maxBodyBytes`; 0 is no limit): a request
 * that declares a Content-Length over the limit is answered 413 before anything goes upstream. A body
 * whose length is not declared (chunked) is counted as it streams, against the same limit, by the
 * exchange (Exchange.onRequestBody): past it the upstream connection is dropped and the answer is 413 too
 * (or, once the response has started, the connection is closed).
 */
import { FilterStatus, type RequestFilter } from './types.js';

export const bodyLimit: RequestFilter = {
  name: 'body-limit',
  appliesTo: (_route, rt) => rt.maxBodyBytes > 0,
  onRequest(ex, head, rt) {
    if (head.contentLength <= rt.maxBodyBytes) return FilterStatus.Continue;
    ex.respondLocal(413, 'body-too-large');
    return FilterStatus.Answered;
  },
};
