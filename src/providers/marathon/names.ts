/**
 * Names Marathon apps go by: the app id as Marathon normalises it, the Mesos task name Marathon gives
 * its tasks (what Mesos-DNS names them by), and the provider-local service name made from it.
 */
import { createHash } from 'node:crypto';

/** `/grp/app` → `app.grp` (Marathon's PathId.toHostname: the Mesos task name). */
export function taskNameOf(appId: string): string {
  return appId
    .split('/')
    .filter((p) => p !== '')
    .reverse()
    .join('.');
}

/** The provider-local service name base: the Mesos-DNS form of the task name (no length cap). */
export function serviceBaseOf(appId: string): string {
  return taskNameOf(appId)
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
}

/** `grp/app/` → `/grp/app`. */
export function normaliseAppId(id: string): string {
  const parts = id.split('/').filter((p) => p !== '');
  return `/${parts.join('/')}`;
}

/** A short, stable suffix that tells apart two app ids that give one service name. */
export function shortHash(s: string): string {
  return createHash('sha1').update(s).digest('hex').slice(0, 6);
}
