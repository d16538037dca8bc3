/**
 * The DNS server's settings, defined once: the config file's `dns:` section (schema, description,
 * default) and the plane's options (`DnsOptions`, engine units: `…Ms` milliseconds, `…S` seconds, `…Bytes`
 * bytes) come from the same line.
 */
import { CIDR, DOMAIN, duration, int, LISTEN, list, map, section, size, str, UPSTREAM, type ValueOf } from '../model/settings.js';
import { EDNS_UDP_PAYLOAD } from './wire.js';

const upstream = str('A forwarder: an IP (port 53), "ip:port" or "[v6]:port".', undefined, UPSTREAM);

export const dnsSettings = section('The DNS server: authoritative for DC/OS names, forwarder for the rest.', {
  listen: str('"host:port" for UDP and TCP (53 needs privileges).', '127.0.0.1:8053', LISTEN),
  upstreams: list('Forwarders for names outside our zones (CoreDNS forward). Empty: recursion is refused.', upstream, []),
  allowRecursionFrom: list(
    'Clients allowed to recurse through us (loopback only by default: never an open resolver).',
    str('A CIDR ("10.0.0.0/8", "fd00::/8"); a bare address is a host prefix.', undefined, CIDR),
    ['127.0.0.0/8', '::1/128'],
  ),
  ttlMs: duration('TTL of authoritative answers, whole seconds (dcos-dns: 5s); "0s" asks resolvers not to cache.', '5s', {
    check: (ms) => (ms % 1000 === 0 ? undefined : `DNS TTLs are whole seconds (${ms}ms is not)`),
  }),
  zoneUpstreams: map(
    'Per-zone forwarders: names in a zone go to its upstreams instead of the global ones, e.g. { "corp.example": ["192.0.2.53"] }; the longest matching zone wins.',
    list('Forwarders for this zone.', upstream, []),
    { key: DOMAIN },
  ),
  domains: list(
    'Extra domains we are authoritative for, with the same Mesos-style names under each. mesos and thisdcos.directory are always served.',
    str('A DNS domain.', undefined, DOMAIN),
    [],
    { dedupe: true },
  ),
  tcpIdleMs: duration(
    'A TCP connection with no query read and no answer written for this long is closed, unless a forwarded query of it is pending (RFC 7766 §6.2.3: seconds).',
    '10s',
    { min: 1, file: 'tcpIdleTimeout' },
  ),
  tcpIdleBusyMs: duration(
    'The idle timeout instead, when shorter, of a TCP connection accepted or active while more than half of maxTcpConnections are open (unbound shortens its own likewise when busy).',
    '1s',
    { min: 1, file: 'tcpIdleTimeoutBusy' },
  ),
  maxTcpConnections: int(
    'Open TCP connections at most. At the cap a newcomer takes the place of an idle connection (no query pending, no answer unsent): the one idle longest of the source holding the most; only when none is idle is the newcomer closed at once.',
    1024,
    { min: 1, max: 1_000_000 },
  ),
  maxTcpConnectionsPerSource: int(
    'Open TCP connections from one source at most; more from it are closed at once. A source is an IPv4 address, or an IPv6 /64 (one host is given a whole /64 and can send from any of its addresses; hosts that share a /64 share its cap).',
    64,
    { min: 1, max: 1_000_000 },
  ),
  maxTcpPending: int('Forwarded queries pending on one TCP connection at most; reading pauses beyond.', 64, { min: 1, max: 65_535 }),
  upstreamTimeoutMs: duration('One upstream attempt; then the next upstream is tried, SERVFAIL after the last.', '2s', { min: 1 }),
  upstreamDownMs: duration('An upstream that timed out is tried last for this long.', '10s', { file: 'upstreamDownTime' }),
  maxInflight: int('Distinct queries forwarded upstream at the same time at most; beyond, SERVFAIL at once.', 1024, {
    min: 1,
    max: 65_536,
  }),
  maxWaiters: int('Clients waiting on one forwarded query at most (identical queries are sent once); beyond, SERVFAIL.', 256, {
    min: 1,
    max: 65_536,
  }),
  holdMs: duration(
    'Records of a provider that left the table are still served for this long (dcos-dns state timeout); "0s": not kept.',
    '5m',
    { file: 'holdTime' },
  ),
  maxUdpPayload: int('Largest UDP answer sent to an EDNS client, bytes; what our OPT record advertises.', EDNS_UDP_PAYLOAD, {
    min: 512,
    max: 65_535,
  }),
  udpBufferBytes: size('Kernel buffers of the UDP listener socket (absorbs bursts; capped by net.core.rmem_max).', '4MiB'),
  cache: section(
    "The forwarder's answer cache. TTLs are honoured and capped; negative answers live for their SOA's TTL (RFC 2308). When full, the oldest entry goes first.",
    {
      maxEntries: int('Entries at most; 0 turns the cache off.', 10_000, { min: 0, max: 10_000_000 }),
      maxBytes: size('Bytes of cached responses at most.', '32MiB'),
      maxTtlS: duration("Cap on a positive answer's lifetime (CoreDNS cache: 1h).", '1h', { unit: 's' }),
      maxNegativeTtlS: duration("Cap on a negative answer's lifetime (RFC 2308 suggests 1–3 hours at most).", '15m', { unit: 's' }),
      maxEntryBytes: size('Responses larger than this are served but not cached.', '16KiB'),
    },
  ),
});

/** The `dns:` section as the config file decodes to (engine units). */
export type DnsSettings = ValueOf<typeof dnsSettings>;

/**
 * The plane's options: the `dns:` section, and the clock (ms since the epoch; tests move it) the answer
 * cache ages by and the TCP refusal logs are rate-limited by.
 */
export type DnsOptions = DnsSettings & { now: () => number };

/** Every default of the `dns:` section, decoded, and Date.now. */
export const DNS_DEFAULTS: Readonly<DnsOptions> = Object.freeze({ ...(dnsSettings.defaultValue as DnsSettings), now: Date.now });

/**
 * What the plane must be given: where it listens, its upstreams, who may recurse and the TTL. The
 * config passes its whole decoded `dns:` section; any engine option left out takes DNS_DEFAULTS.
 */
export type DnsPlaneConfig = Pick<DnsSettings, 'listen' | 'upstreams' | 'allowRecursionFrom' | 'ttlMs'> & Partial<DnsSettings>;
