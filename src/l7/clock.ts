/** The engine's cached clock lives with the byte streams that refresh it (src/net/clock.ts). */
export { clock, refreshClock } from '../net/clock.js';
