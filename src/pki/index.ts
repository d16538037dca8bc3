/**
 * The PKI for the composition root: one cluster CA, automatic certificates for TLS route hosts, the
 * secret store, and the session keys instances share (sticky-cookie secret, TLS ticket keys), all on the
 * given store and sealed under the master key from `PORTICO_PKI_KEY` or `<dataDir>/pki-master.key`.
 * Instances sharing a store must share that key.
 */
import type { Store } from '../store/types.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { AutoCertManager, type AutoCertOptions } from './auto.js';
import { ClusterCA, type ClusterCAOptions } from './ca.js';
import { loadMasterKey, SealedBox, type KeyType } from './crypto.js';
import { SecretStore } from './secrets.js';
import { SessionKeyManager, type SessionKeyOptions } from './session-keys.js';

export { AutoCertManager, autoHosts, type AutoCert } from './auto.js';
export {
  ClusterCA,
  type CaInfo,
  type CertRecord,
  type IssueRequest,
  type IssuedCertificate,
  type SignPolicy,
  type SignedCertificate,
} from './ca.js';
export { registerPkiApi, type PkiServices } from './api.js';
export { SecretStore, writeSecretFiles, type MarathonAppJson, type WrittenSecrets } from './secrets.js';
export { SealedBox, loadMasterKey, type KeyType } from './crypto.js';
export {
  SessionKeyManager,
  SessionKeys,
  RotatingKey,
  SESSION_KEYS_KEY,
  SESSION_KEY_DEFAULTS,
  type SessionKeyClock,
  type SessionKeyOptions,
} from './session-keys.js';

export interface OpenPkiOptions {
  store: Store;
  dataDir: string;
  logger?: Logger;
  /** The admin api's base URL (`http://127.0.0.1:9900`); leaves then name `<base>/v1/crl` as their CRL distribution point. */
  apiBaseUrl?: string;
  /** CA key type on first creation. Default ecdsa-p256. */
  keyType?: KeyType;
  ca?: Partial<Pick<ClusterCAOptions, 'leafKeyType' | 'leafTtlDays' | 'policy' | 'organization'>>;
  auto?: Partial<Pick<AutoCertOptions, 'ttlDays' | 'renewAt' | 'keyType' | 'lockTtlMs'>>;
  sessionKeys?: Partial<Omit<SessionKeyOptions, 'store' | 'box' | 'logger'>>;
  /**
   * How long `openPki` waits for the session keys (read from the store, or created there), ms; default
   * 3000. Past it, it returns anyway: planes start with keys of their own and take the shared ones
   * when the store answers.
   */
  sessionKeysWaitMs?: number;
  env?: NodeJS.ProcessEnv;
}

export interface Pki {
  ca: ClusterCA;
  auto: AutoCertManager;
  secrets: SecretStore;
  /** The sticky-cookie secret and TLS ticket keys every instance on the store shares. */
  sessionKeys: SessionKeyManager;
  box: SealedBox;
  close(): void;
}

export async function openPki(opts: OpenPkiOptions): Promise<Pki> {
  const box = new SealedBox(await loadMasterKey(opts.dataDir, opts.env));
  const logger = opts.logger ?? silentLogger;
  const ca = new ClusterCA({
    store: opts.store,
    box,
    logger,
    ...opts.ca,
    ...(opts.apiBaseUrl ? { crlUrl: `${opts.apiBaseUrl.replace(/\/+$/, '')}/v1/crl` } : {}),
    ...(opts.keyType ? { keyType: opts.keyType } : {}),
  });
  const auto = new AutoCertManager({ ca, store: opts.store, box, logger, ...opts.auto });
  const secrets = new SecretStore(opts.store, box);
  const sessionKeys = new SessionKeyManager({ ...opts.sessionKeys, store: opts.store, box, logger });
  const log = logger.child({ component: 'pki' });
  // Usually at once (an embedded store, a Redis that answers); never longer than the bound.
  let waited: NodeJS.Timeout | undefined;
  const loaded = await Promise.race([
    sessionKeys.start().then(() => true),
    new Promise<false>((resolve) => {
      waited = setTimeout(() => resolve(false), opts.sessionKeysWaitMs ?? 3000);
    }),
  ]);
  clearTimeout(waited);
  if (!loaded)
    log.warn(
      { waitedMs: opts.sessionKeysWaitMs ?? 3000 },
      'session keys not read from the store yet: planes start with keys of their own and take the shared ones when it answers',
    );
  // Forget certificates long expired, hourly; one instance of those sharing the store does it (a lock).
  const prune = () =>
    void ca.prune().catch((err) => log.warn({ err: (err as Error).message }, 'pruning expired certificate records failed; will retry'));
  const first = setTimeout(prune, 60_000);
  const hourly = setInterval(prune, 3_600_000);
  first.unref();
  hourly.unref();
  return {
    ca,
    auto,
    secrets,
    sessionKeys,
    box,
    close() {
      clearTimeout(first);
      clearInterval(hourly);
      sessionKeys.close();
      auto.close();
      ca.close();
    },
  };
}
