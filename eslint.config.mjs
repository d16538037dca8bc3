// The linter: typescript-eslint's recommended rules over src/, test/ and bench/, with the rules that
// only restate the formatter's job turned off (eslint-config-prettier). Prettier formats; `npm run lint`
// runs the type check, this, and `prettier --check`.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tap/**', 'native/**', 'data/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      // Unused names are errors, except those marked unused on purpose with a leading underscore.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Tests and a few wire decoders read untyped JSON; `any` is allowed there, warned about in src/.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'warn' },
  },
  // The dependency rules of docs/architecture.md, checked. (One no-restricted-imports per file: the last
  // config that sets it wins, so every group lists the server rule too.)
  restrict(['src/**/*.ts'], [], ['src/main.ts', 'src/api/**', 'src/model/**', 'src/l7/**', 'src/l4/**', 'src/dns/**']),
  restrict(['src/model/**/*.ts'], [{ group: ['../*', '../../*'], message: 'model imports nothing of ours' }]),
  ...['l7', 'l4', 'dns'].map((plane) =>
    restrict(
      [`src/${plane}/**/*.ts`],
      [
        {
          group: [
            ...['l7', 'l4', 'dns'].filter((p) => p !== plane).flatMap((p) => [`../${p}/*`, `../../${p}/*`]),
            ...['providers', 'aggregator', 'store', 'instances', 'overlay', 'vips', 'config'].flatMap((p) => [`../${p}/*`, `../../${p}/*`]),
            ...['main', 'planes', 'stages', 'boot', 'context'].flatMap((f) => [`../${f}.js`, `../../${f}.js`]),
          ],
          message:
            'a data plane is fed tables: it imports model, pki, net, telemetry and api/types, never a feed, the config loader, the store or another plane',
        },
      ],
    ),
  ),
  prettier,
);

function restrict(files, patterns, ignores = []) {
  const server = {
    group: ['**/api/server.js'],
    message: 'areas add resources through RouteRegistrar (api/types.ts); only main.ts holds the server',
  };
  return { files, ignores, rules: { 'no-restricted-imports': ['error', { patterns: [...patterns, server] }] } };
}
