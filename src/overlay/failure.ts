/** A refusal the plugin reports as a CNI error: the spec's code (or ours, from 100), message, details. */
import type { CniError } from './cni/protocol.js';

export class CniFailure extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
  }
  toJSON(): CniError {
    return { code: this.code, msg: this.message, ...(this.details !== undefined ? { details: this.details } : {}) };
  }
}
