/**
 * The `portico` command.
 *
 *   portico up [--config F] [--store URL] [--data DIR] [--api-listen HOST:PORT]
 *   portico validate F
 *   portico table [--json] [--api URL] [--token-file F]
 *   portico version | help
 *
 * Every command but `up` and `validate` talks to a running appliance through its admin api only.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { up as Up } from '../main.js';
import { PKI_USAGE, runPkiCommand } from './pki.js';
import { ValidationError } from '../model/errors.js';
import type { RoutingTable, Service } from '../model/types.js';
import { createLogger } from '../telemetry/log.js';

/*
 * Each process of `portico up` loads only what it runs: the supervisor (src/workers/supervisor.ts) none of the
 * planes, feeds or config code, a worker no feed or store. So these are required when their command runs.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const lazy = {
  // The config loader compiles its schema validator when loaded (half a second): a worker and the supervisor
  // never parse a config.
  config: () => require('../config/index.js') as typeof import('../config/index.js'),
  up: (): typeof Up => (require('../main.js') as typeof import('../main.js')).up,
  supervise: () => (require('../workers/supervisor.js') as typeof import('../workers/supervisor.js')).supervise,
  runControl: () => (require('../workers/control.js') as typeof import('../workers/control.js')).runControl,
  runWorker: () => (require('../workers/worker.js') as typeof import('../workers/worker.js')).runWorker,
};
/* eslint-enable @typescript-eslint/no-require-imports */

export const USAGE = `usage: portico <command> [options]

commands:
  up [--config FILE] [--store URL] [--data DIR] [--api-listen HOST:PORT] [--no-supervisor]
                       run the appliance (what \`npm start\` runs); SIGHUP reloads, SIGTERM drains and stops.
                       A supervisor runs the control process and \`workers\` data-plane processes and
                       restarts either if it dies; --no-supervisor runs everything in one process
  validate FILE        check a config file; prints every error with file:line and exits 1 if there is one
  table [--json]       show the routing table the running appliance serves
  ca | cert | secret   the cluster CA, certificates and secrets (below)
  version              print the version
  help                 this text

${PKI_USAGE}
common options:
  --config FILE        config file (default: $PORTICO_CONFIG or config/portico.yaml)
  --api URL            admin api of a running appliance (default: from the config's api.listen)
  --token-file FILE    bearer token file (default: <data>/api-token; or $PORTICO_TOKEN)
`;

export interface ParsedArgs {
  command: string;
  positional: string[];
  flags: Record<string, string | true>;
}

const BOOLEAN_FLAGS = new Set(['json', 'help', 'force', 'no-supervisor']);

export function parseArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      if (eq > 0) flags[name] = a.slice(eq + 1);
      else if (BOOLEAN_FLAGS.has(name)) flags[name] = true;
      else {
        const v = argv[i + 1];
        if (v === undefined || v.startsWith('--')) throw new UsageError(`--${name} needs a value`);
        flags[name] = v;
        i++;
      }
    } else if (a === '-h') flags.help = true;
    else positional.push(a);
  }
  return { command: positional.shift() ?? 'help', positional, flags };
}

export class UsageError extends Error {}

function flag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags[name];
  return typeof v === 'string' ? v : undefined;
}

export function configPathOf(args: ParsedArgs): string {
  return path.resolve(flag(args, 'config') ?? process.env.PORTICO_CONFIG ?? 'config/portico.yaml');
}

/** `portico up`: the supervisor, which runs the control process and the data-plane workers (src/workers/). */
async function cmdUp(argv: string[]): Promise<number> {
  return lazy.supervise()({ argv: argv.filter((_, i) => i !== argv.indexOf('up')), logger: createLogger() });
}

/** Options of `up()` from the flags and the environment. */
function upOptions(
  args: ParsedArgs,
  logger: ReturnType<typeof createLogger>,
): Parameters<typeof Up>[0] & { logger: ReturnType<typeof createLogger> } {
  const opts: Parameters<typeof Up>[0] & { logger: ReturnType<typeof createLogger> } = { configPath: configPathOf(args), logger };
  const store = flag(args, 'store') ?? process.env.PORTICO_STORE;
  if (store) opts.store = store;
  const data = flag(args, 'data') ?? process.env.PORTICO_DATA;
  if (data) opts.data = data;
  const apiListen = flag(args, 'api-listen');
  if (apiListen) opts.apiListen = apiListen;
  return opts;
}

/** `portico up --no-supervisor` (debugging): everything in this one process, as a library `up()` call runs. */
async function cmdUpInProcess(args: ParsedArgs): Promise<number> {
  const logger = createLogger();
  const opts = upOptions(args, logger);
  let app: Awaited<ReturnType<typeof Up>>;
  try {
    app = await lazy.up()(opts);
  } catch (err) {
    logger.fatal({ err: err instanceof ValidationError ? undefined : err }, err instanceof Error ? err.message : String(err));
    process.stderr.write(`portico: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'signal received');
      process.off('SIGHUP', hup);
      app.stop().then(
        () => resolve(0),
        (err) => {
          logger.error({ err }, 'stop failed');
          resolve(1);
        },
      );
    };
    const hup = () => {
      logger.info({ signal: 'SIGHUP' }, 'reloading the config file');
      app.reload().catch((err) => logger.error({ err }, 'reload failed'));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', hup);
  });
}

async function cmdValidate(args: ParsedArgs): Promise<number> {
  const file = args.positional[0] ?? flag(args, 'config');
  if (!file) throw new UsageError('validate needs a FILE');
  try {
    const { configToSnapshot, loadConfigFile } = lazy.config();
    const cfg = await loadConfigFile(path.resolve(file));
    const snap = configToSnapshot(cfg, 'file');
    process.stdout.write(
      `${file}: ok (${Object.keys(snap.services).length} services, ${snap.routes.length} routes, ${Object.keys(snap.entrypoints).length} entrypoints)\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** Where the running appliance's api is and its token, from flags, env, or the config file. */
export async function apiTarget(args: ParsedArgs): Promise<{ url: string; token: string }> {
  let url = flag(args, 'api') ?? process.env.PORTICO_API;
  let tokenFile = flag(args, 'token-file');
  let token = process.env.PORTICO_TOKEN;
  if (!url || (!token && !tokenFile)) {
    const cfg = await lazy.config().loadConfigFile(configPathOf(args));
    const listen = cfg.api.listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:');
    url ??= `http://${listen}`;
    tokenFile ??= path.join(path.resolve(flag(args, 'data') ?? cfg.data), 'api-token');
  }
  if (!token) token = (await readFile(tokenFile as string, 'utf8')).trim();
  return { url: url.replace(/\/+$/, ''), token };
}

async function apiGet(args: ParsedArgs, pathname: string): Promise<unknown> {
  const { url, token } = await apiTarget(args);
  const res = await fetch(`${url}${pathname}`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`api ${pathname}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function cmdTable(args: ParsedArgs): Promise<number> {
  const table = (await apiGet(args, '/v1/table')) as RoutingTable;
  if (args.flags.json) {
    process.stdout.write(`${JSON.stringify(table, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  out.push(`routing table version ${table.version} (${table.hash.slice(0, 12)}, ${table.createdAt})`);
  out.push('', 'ENTRYPOINT  LISTEN');
  for (const ep of Object.values(table.entrypoints)) out.push(`${ep.name.padEnd(11)} ${ep.listen}${ep.tls ? ' tls' : ''}`);
  out.push('', 'ROUTE'.padEnd(40) + ' SERVICE');
  for (const r of table.routes)
    out.push(`${`${r.entrypoint} ${r.host}${r.path}${r.pathMatch === 'exact' ? ' (exact)' : ''}`.padEnd(40)} ${r.service}`);
  out.push('', 'SERVICE'.padEnd(28) + ' ENDPOINTS');
  // Over the api the services are the JSON of the table's map: a record by id.
  for (const s of Object.values(table.services as unknown as Record<string, Service>)) {
    const eps = s.endpoints.map(
      (e) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}${e.health !== 'unknown' ? `(${e.health})` : ''}`,
    );
    out.push(`${s.id.padEnd(28)} ${eps.join(' ') || '-'}`);
  }
  if (table.vips.length) {
    out.push('', 'VIP');
    for (const v of table.vips) out.push(`${v.key} → ${v.service}`);
  }
  for (const c of table.conflicts) out.push(`conflict: ${c.message}`);
  for (const w of table.warnings) out.push(`warning: ${w.message}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseArgs(argv);
    if (args.flags.help || args.command === 'help') {
      process.stdout.write(USAGE);
      return 0;
    }
    switch (args.command) {
      case 'up':
        return args.flags['no-supervisor'] ? await cmdUpInProcess(args) : await cmdUp(argv);
      case '__control':
        return await lazy.runControl()(upOptions(args, createLogger()));
      case '__worker':
        return await lazy.runWorker()();
      case 'validate':
        return await cmdValidate(args);
      case 'table':
        return await cmdTable(args);
      case 'ca':
      case 'cert':
      case 'secret':
        return await runPkiCommand(args, { api: await apiTarget(args) });
      case 'version': {
        const pkg = JSON.parse(await readFile(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
        process.stdout.write(`portico ${pkg.version}\n`);
        return 0;
      }
      default:
        throw new UsageError(`unknown command "${args.command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`portico: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`portico: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
