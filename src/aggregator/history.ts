/**
 * The last N tables, for the api's versions and diffs. The aggregator keeps one of what it built, the
 * table pipeline one of what the planes serve.
 */
import type { RoutingTable } from '../model/types.js';
import { diffTables } from './diff.js';
import type { TableDiff, TableVersionInfo } from './types.js';

export class TableHistory {
  private readonly tables: RoutingTable[] = [];

  constructor(private readonly size: number) {}

  push(table: RoutingTable): void {
    this.tables.push(table);
    if (this.tables.length > this.size) this.tables.shift();
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

export function countEndpoints(t: RoutingTable): number {
  let n = 0;
  for (const id in t.services) n += (t.services[id] as { endpoints: unknown[] }).endpoints.length;
  return n;
}

export function tableInfo(t: RoutingTable): TableVersionInfo {
  return {
    version: t.version,
    hash: t.hash,
    createdAt: t.createdAt,
    services: Object.keys(t.services).length,
    routes: t.routes.length,
    endpoints: countEndpoints(t),
    conflicts: t.conflicts.length,
  };
}
