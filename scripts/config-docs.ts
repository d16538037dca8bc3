/**
 * Writes docs/config.md, the config reference, from the definitions (src/config/reference.ts):
 * `npm run docs:config`. With --check it writes nothing and exits 1 when the file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { renderConfigReference } from '../src/config/reference.js';

const file = resolve(__dirname, '../docs/config.md');
const text = renderConfigReference();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    // missing: stale
  }
  if (current !== text) {
    console.error(`${file} is stale: run npm run docs:config`);
    process.exit(1);
  }
  console.log(`${file} is up to date`);
} else {
  writeFileSync(file, text);
  console.log(`wrote ${file}`);
}
