/**
 * `npm run bench -- <plane>`: one script per data plane; each runs Portico and its peers side by side
 * on this machine and ends with the contract's JSON line.
 */
import { say } from './lib.js';

const BENCHES: Record<string, () => Promise<unknown>> = {
  table: async () => (await import('./table.js')).main(),
  l7: async () => (await import('./l7.js')).main(),
  ipam: async () => (await import('./ipam.js')).main(),
  l4: async () => (await import('./l4.js')).main(),
  dns: async () => (await import('./dns.js')).main(),
  pki: async () => (await import('./pki.js')).main(),
  churn: async () => (await import('./churn.js')).main(),
  start: async () => (await import('./start.js')).main(),
  'l7-parser': async () => (await import('./l7-parser.js')).main(),
  config: async () => (await import('./config.js')).main(),
};

async function run(): Promise<void> {
  const name = process.argv[2];
  const bench = name ? BENCHES[name] : undefined;
  if (!bench) {
    say(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}>`);
    process.exitCode = 2;
    return;
  }
  await bench();
}

run().then(
  () => process.exit(process.exitCode ?? 0),
  (err) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
