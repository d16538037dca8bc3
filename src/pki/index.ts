/**
 * The PKI for the composition root: one cluster CA, automatic certificates for TLS route hosts, and the
 * secret store, all on the given store and sealed under the master key from `PORTICO_PKI_KEY` or
 * `<dataDir>/pki-master.key`. Instances sharing a store must share that key.
 */
import type { Store } from '../store/types.js';
import { silentLogger, type Logger } from '../telemetry/log.js';
import { AutoCertManager, type AutoCertOptions } from './auto.js';
import { ClusterCA, type ClusterCAOptions } from './ca.js';
import { loadMasterKey, SealedBox, type KeyType } from './crypto.js';
import { SecretStore } from './secrets.js';

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
  env?: NodeJS.ProcessEnv;
}

export interface Pki {
  ca: ClusterCA;
  auto: AutoCertManager;
  secrets: SecretStore;
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
  // Forget certificates long expired, hourly; one instance of those sharing the store does it (a lock).
  const log = logger.child({ component: 'pki' });
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
    box,
    close() {
      clearTimeout(first);
      clearInterval(hourly);
      auto.close();
      ca.close();
    },
  };
}
