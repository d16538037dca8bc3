/**
 * The last N tables, for the api's versions and diffs. The aggregator keeps one of what it built, the
 * table pipeline one of what the planes serve.
 *
 * Memory follows what is served: versions share every unchanged part, and an old table much larger than
 * the current one (the 100,000 routes of a file that went back to three) leaves the history at once rather
 * than pinning what is no longer served for the next N changes.
 */
import type { RoutingTable } from '../model/types.js';
import { diffTables } from './diff.js';
import type { TableDiff, TableVersionInfo } from './types.js';

/** An old table is kept while it is at most this many times the current one's size (plus `SLACK`). */
const KEEP_FACTOR = 2;
const SLACK = 1_000;

export class TableHistory {
  private tables: RoutingTable[] = [];

  constructor(private readonly size: number) {}

  push(table: RoutingTable): void {
    this.tables.push(table);
    if (this.tables.length > this.size) this.tables.shift();
    const limit = weight(table) * KEEP_FACTOR + SLACK;
    if (this.tables.some((t) => weight(t) > limit)) this.tables = this.tables.filter((t) => weight(t) <= limit || t === table);
  }

  get(version: number): RoutingTable | undefined {
    return this.tables.find((t) => t.version === version);
  }

  versions(): TableVersionInfo[] {
    return this.tables.map(tableInfo);
  }

  diff(from: number, to: number): TableDiff | undefined {
    const a = this.get(from);
    const b = this.get(to);
    return a && b ? diffTables(a, b) : undefined;
  }
}

function weight(t: RoutingTable): number {
  return t.services.size + t.routes.length + t.vips.length;
}

const endpointCounts = new WeakMap<RoutingTable['services'], number>();

export function countEndpoints(t: RoutingTable): number {
  let n = endpointCounts.get(t.services);
  if (n === undefined) {
    n = 0;
    for (const s of t.services.values()) n += s.endpoints.length;
    endpointCounts.set(t.services, n);
  }
  return n;
}

export function tableInfo(t: RoutingTable): TableVersionInfo {
  return {
    version: t.version,
    hash: t.hash,
    createdAt: t.createdAt,
    services: t.services.size,
    routes: t.routes.length,
    endpoints: countEndpoints(t),
    conflicts: t.conflicts.length,
  };
}
