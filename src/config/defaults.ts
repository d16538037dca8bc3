/**
 * Every default of the config file, decoded: what a file that leaves everything out loads to. Not a
 * table of its own: it is read from the `default`s of the definitions (schema.ts and the planes'
 * settings.ts), so a default is changed in one line, there.
 */
import { configSettings } from './schema.js';
import type { PorticoConfig } from './types.js';

export const DEFAULTS: Readonly<PorticoConfig> = configSettings.defaultValue as PorticoConfig;
