export { Aggregator, type AggregatorOptions } from './aggregator.js';
export { buildContent, canonicalJson, hashOf, deepFreeze } from './build.js';
export { diffTables } from './diff.js';
export type * from './types.js';
