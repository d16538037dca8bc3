/**
 * `portico __control`: the control process under the supervisor (src/workers/supervisor.ts). It runs
 * `up()` — config, store, feeds, aggregator, stages, pki, admin api — with the data planes in the
 * workers, and takes its signals from the supervisor: `stop` (SIGTERM/SIGINT of `portico up`) drains the
 * workers and closes everything, `reload` (SIGHUP) re-reads every source.
 */
import { ValidationError } from '../model/errors.js';
import { up, type UpOptions } from '../main.js';
import type { Logger } from '../telemetry/log.js';
import type { ControlToSupervisor, SupervisorToControl } from './messages.js';
import type { SupervisorChannel } from './host.js';

export async function runControl(opts: Omit<UpOptions, 'supervisor'> & { logger: Logger }): Promise<number> {
  const logger = opts.logger;
  if (!process.send) {
    process.stderr.write('portico: __control is started by `portico up`\n');
    return 2;
  }
  // Ctrl-C and a terminal hangup reach the whole process group: the supervisor decides what they mean.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  const send = (msg: ControlToSupervisor) => {
    if (process.connected) process.send!(msg);
  };
  const channel: SupervisorChannel = {
    send,
    on: (event, fn) => process.on(event, fn as (m: unknown) => void),
    off: (event, fn) => process.off(event, fn as (m: unknown) => void),
  };
  // The supervisor gone while we start (killed): nobody would use what we start; leave at once. (Once up,
  // the handler below stops the parts cleanly instead.)
  const orphaned = () => {
    logger.error('the supervisor is gone before the control process was up; exiting');
    process.exit(1);
  };
  process.once('disconnect', orphaned);
  // A stop asked for while we start (SIGTERM to `portico up` during a long first sync) is kept and acted on
  // as soon as up() resolves; before, it was dropped and `portico up` waited forever.
  let stopAsked: string | undefined;
  const early = (msg: SupervisorToControl) => {
    if (msg?.t === 'stop') stopAsked ??= msg.signal;
  };
  channel.on('message', early);
  let app: Awaited<ReturnType<typeof up>>;
  try {
    app = await up({ ...opts, supervisor: channel });
  } catch (err) {
    logger.fatal({ err: err instanceof ValidationError ? undefined : err }, err instanceof Error ? err.message : String(err));
    process.stderr.write(`portico: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  process.off('disconnect', orphaned);
  channel.off('message', early);
  send({ t: 'up' });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ why }, 'stopping');
      app.stop().then(
        () => {
          send({ t: 'stopped', code: 0 });
          resolve(0);
        },
        (err) => {
          logger.error({ err }, 'stop failed');
          send({ t: 'stopped', code: 1 });
          resolve(1);
        },
      );
    };
    channel.on('message', (msg: SupervisorToControl) => {
      if (msg.t === 'stop') stop(msg.signal);
      else if (msg.t === 'reload') {
        logger.info({ signal: 'SIGHUP' }, 'reloading the config file');
        app.reload().catch((err) => logger.error({ err }, 'reload failed'));
      }
    });
    if (stopAsked !== undefined) stop(stopAsked);
    // The supervisor is gone (killed): no one would restart us or our workers; stop cleanly.
    process.once('disconnect', () => {
      app.workers?.detach(); // they leave on their own: nothing to wait for
      stop('supervisor gone');
    });
  });
}
