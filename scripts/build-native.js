#!/usr/bin/env node
'use strict';
// Builds the native `portico-cni` relay (native/portico-cni.c) with the system C compiler.
//
//   node scripts/build-native.js [OUT] [FALLBACK]
//
// $CC picks the compiler and $CFLAGS adds flags. OUT defaults to dist/bin/portico-cni; FALLBACK, the Node plugin the relay runs whenever it cannot answer
// itself, defaults to this checkout's bin/portico-cni (compiled in as an absolute path; the relay's
// PORTICO_CNI_FALLBACK overrides it at run time). `npm run build` runs this after tsc.
//
// No C compiler ($CC, cc or gcc): one warning line and exit 0, nothing built: the Node plugin
// (bin/portico-cni) remains what to install. A compiler that fails on the source is an error (exit 1).
// Plain Node, no dependencies.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const source = path.join(root, 'native', 'portico-cni.c');
const out = path.resolve(process.argv[2] || path.join(root, 'dist', 'bin', 'portico-cni'));
const fallback = path.resolve(process.argv[3] || path.join(root, 'bin', 'portico-cni'));

const FLAGS = ['-O2', '-Wall', '-Wextra', '-Werror', '-std=c11', '-D_GNU_SOURCE'];

function findCompiler() {
  const candidates = process.env.CC ? [process.env.CC] : ['cc', 'gcc'];
  for (const cc of candidates) {
    const r = spawnSync(cc, ['--version'], { stdio: 'ignore' });
    if (!r.error && r.status === 0) return cc;
  }
  return undefined;
}

/** `s` as a C string literal: quote, backslash and `?` (trigraphs, in ISO C mode) escaped, bytes outside printable ASCII in octal. */
function cString(s) {
  let lit = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b === 0x22 || b === 0x5c || b === 0x3f) lit += `\\${String.fromCharCode(b)}`;
    else if (b < 0x20 || b > 0x7e) lit += `\\${b.toString(8).padStart(3, '0')}`;
    else lit += String.fromCharCode(b);
  }
  return `${lit}"`;
}

function main() {
  const cc = findCompiler();
  if (!cc) {
    process.stderr.write(`build-native: warning: no C compiler (${process.env.CC ? `CC=${process.env.CC}` : 'cc, gcc'}): the native portico-cni relay is not built; install gcc (Debian: gcc libc6-dev) for it, or use the Node plugin bin/portico-cni\n`);
    return 0;
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  const extra = (process.env.CFLAGS ?? '').split(/\s+/).filter(Boolean); // e.g. CFLAGS='-g -fsanitize=address,undefined'
  const args = [...FLAGS, ...extra, `-DPORTICO_CNI_FALLBACK_PATH=${cString(fallback)}`, '-o', tmp, source];
  const r = spawnSync(cc, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error || r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    process.stderr.write(`build-native: ${cc} ${args.join(' ')} failed${r.error ? `: ${r.error.message}` : ` (exit ${r.status})`}\n`);
    return 1;
  }
  fs.chmodSync(tmp, 0o755);
  fs.renameSync(tmp, out);
  const shown = path.relative(process.cwd(), out);
  process.stdout.write(`build-native: ${shown && !shown.startsWith('..') ? shown : out} (falls back to ${fallback})\n`);
  return 0;
}

process.exitCode = main();
