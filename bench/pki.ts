/**
 * `npm run bench -- pki`: the cluster CA on this machine.
 *
 *  - leaf issuance, ECDSA P-256 and RSA 2048 keys (key generation + certificate + the store write of the
 *    issued record, on an embedded store in a temp dir): median and p99 over BENCH_PKI_N (1,000) ECDSA
 *    leaves and BENCH_PKI_RSA_N (200) RSA leaves; RSA key generation is ~50-200 ms, so 1,000 would take minutes;
 *  - CSR signing (verify the CSR, build and sign the certificate, store the record), BENCH_PKI_N times;
 *  - an SNI map of BENCH_PKI_SNI (10,000) names: a `tls.createServer` whose SNICallback looks the name
 *    up in a Map of SecureContexts (built from 8 distinct certificates and keys to keep setup fast), and a
 *    client handshake (`tls.connect({ servername })`, no session reuse) to the first and the last name,
 *    beside the same server with a one-entry map; median of BENCH_PKI_HANDSHAKES (60) each.
 * Goals: ECDSA leaf median ≤ 10 ms; handshake to the 10,000th name within 20% of the first.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { ClusterCA } from '../src/pki/ca.js';
import { generateKey, importSigningKey, importPublicKey, SealedBox, signingAlgorithm, x509 } from '../src/pki/crypto.js';
import { EmbeddedStore } from '../src/store/embedded.js';
import { median, percentile, ratio, report, round, say } from './lib.js';

const N = Number(process.env.BENCH_PKI_N ?? 1000);
const RSA_N = Number(process.env.BENCH_PKI_RSA_N ?? 200);
const SNI_N = Number(process.env.BENCH_PKI_SNI ?? 10_000);
const HANDSHAKES = Number(process.env.BENCH_PKI_HANDSHAKES ?? 60);

const ms = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;

function stats(xs: number[]): { n: number; medianMs: number; p99Ms: number } {
  return { n: xs.length, medianMs: round(median(xs), 3), p99Ms: round(percentile(xs, 99), 3) };
}

async function timeEach(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(20, n); i++) await fn(); // warm-up
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(ms(t0));
  }
  return out;
}

/** Handshake times to `servername` against a server on `port`. */
async function handshakes(port: number, servername: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n + 5; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false }, () => {
        const elapsed = ms(t0);
        if (i >= 5) out.push(elapsed);
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
  }
  return out;
}

async function sniServer(
  map: Map<string, tls.SecureContext>,
  fallback: tls.SecureContext,
): Promise<{ port: number; close: () => Promise<void> }> {
  const server = tls.createServer(
    {
      SNICallback: (name, cb) => cb(null, map.get(name.toLowerCase()) ?? fallback),
    },
    (sock) => sock.end(),
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

export async function main(): Promise<void> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'portico-bench-pki-'));
  const store = await EmbeddedStore.open(dir);
  const ca = new ClusterCA({ store, box: new SealedBox(Buffer.alloc(32, 1)), crlUrl: 'http://127.0.0.1:9900/v1/crl' });
  try {
    await ca.init();
    say(`pki bench: ${N} ECDSA P-256 leaves, ${RSA_N} RSA 2048 leaves, ${N} CSR signings, SNI map of ${SNI_N}`);

    let i = 0;
    const ecdsa = stats(await timeEach(N, () => ca.issue({ hosts: [`e${i++}.example.test`], keyType: 'ecdsa-p256' })));
    say(`  issue ECDSA P-256 leaf:  median ${ecdsa.medianMs} ms  p99 ${ecdsa.p99Ms} ms`);
    const rsa = stats(await timeEach(RSA_N, () => ca.issue({ hosts: [`r${i++}.example.test`], keyType: 'rsa-2048' })));
    say(`  issue RSA 2048 leaf:     median ${rsa.medianMs} ms  p99 ${rsa.p99Ms} ms  (n=${RSA_N})`);

    const k = await generateKey('ecdsa-p256');
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: [{ CN: ['csr.example.test'] }],
      keys: {
        privateKey: await importSigningKey(k.privateKeyPem, 'ecdsa-p256'),
        publicKey: await importPublicKey(k.spkiDer, 'ecdsa-p256'),
      } as never,
      signingAlgorithm: signingAlgorithm('ecdsa-p256'),
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'csr.example.test' }])],
    });
    const csrPem = csr.toString('pem');
    const sign = stats(await timeEach(N, () => ca.sign(csrPem)));
    say(`  sign ECDSA CSR:          median ${sign.medianMs} ms  p99 ${sign.p99Ms} ms`);

    // SNI: 10,000 names over 8 distinct certificates.
    const distinct = await Promise.all(Array.from({ length: 8 }, (_, j) => ca.issue({ hosts: [`*.s${j}.example.test`] })));
    const t0 = process.hrtime.bigint();
    const big = new Map<string, tls.SecureContext>();
    const names: string[] = [];
    for (let j = 0; j < SNI_N; j++) {
      const c = distinct[j % distinct.length]!;
      const name = `n${j}.s${j % distinct.length}.example.test`;
      names.push(name);
      big.set(name, tls.createSecureContext({ cert: c.certPem + c.chainPem, key: c.keyPem }));
    }
    const buildMs = ms(t0);
    say(`  built ${SNI_N} SecureContexts in ${round(buildMs, 0)} ms`);
    const fallback = big.get(names[0]!)!;
    const one = new Map([[names[0]!, fallback]]);
    const bigSrv = await sniServer(big, fallback);
    const oneSrv = await sniServer(one, fallback);
    let first: number[] = [];
    let last: number[] = [];
    let single: number[] = [];
    try {
      // Interleave, so drift on the machine affects all three alike.
      for (let r = 0; r < 3; r++) {
        single = single.concat(await handshakes(oneSrv.port, names[0]!, Math.ceil(HANDSHAKES / 3)));
        first = first.concat(await handshakes(bigSrv.port, names[0]!, Math.ceil(HANDSHAKES / 3)));
        last = last.concat(await handshakes(bigSrv.port, names[SNI_N - 1]!, Math.ceil(HANDSHAKES / 3)));
      }
    } finally {
      await bigSrv.close();
      await oneSrv.close();
    }
    const sni = {
      entries: SNI_N,
      buildMs: round(buildMs, 0),
      firstNameMs: round(median(first), 3),
      lastNameMs: round(median(last), 3),
      oneEntryMapMs: round(median(single), 3),
      handshakes: first.length,
    };
    say(
      `  TLS handshake via SNI:   1st name ${sni.firstNameMs} ms, ${SNI_N}th name ${sni.lastNameMs} ms, 1-entry map ${sni.oneEntryMapMs} ms (median of ${first.length})`,
    );

    const lastOverFirst = ratio(sni.lastNameMs, sni.firstNameMs);
    report({
      bench: 'pki',
      runs: 1,
      results: {
        portico: {
          issueEcdsaP256: ecdsa,
          issueRsa2048: rsa,
          signCsrEcdsa: sign,
          sni,
        },
      },
      ratios: {
        sniLastOverFirst: lastOverFirst,
        sniBigOverOneEntry: ratio(sni.lastNameMs, sni.oneEntryMapMs),
        rsaOverEcdsaIssue: ratio(rsa.medianMs, ecdsa.medianMs),
      },
      goals: {
        ecdsaLeaf: { goal: 'median ECDSA P-256 leaf issuance ≤ 10 ms', met: ecdsa.medianMs <= 10 },
        sniIndependent: {
          goal: 'handshake to the 10,000th name within 20% of the first',
          met: lastOverFirst === null ? null : lastOverFirst <= 1.2,
        },
      },
    });
  } finally {
    ca.close();
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
