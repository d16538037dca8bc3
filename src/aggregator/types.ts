import type { RoutingTable, TableChange } from '../model/types.js';

/** Lists of ids that differ between two tables. Services by id, routes by id, VIPs by key. */
export interface DiffSection {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface TableDiff {
  from: number;
  to: number;
  services: DiffSection;
  routes: DiffSection;
  entrypoints: DiffSection;
  vips: DiffSection;
  /** True when nothing differs. */
  empty: boolean;
}

export interface TableVersionInfo {
  version: number;
  hash: string;
  createdAt: string;
  services: number;
  routes: number;
  endpoints: number;
  conflicts: number;
}

/**
 * A new table, the one before, and what changed between them (undefined: take the whole table as new —
 * the decision order changed, or the listener was handed a table it did not see come).
 */
export type TableListener = (table: RoutingTable, previous: RoutingTable | undefined, change?: TableChange) => void;
