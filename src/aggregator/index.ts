export { Aggregator, type AggregatorOptions } from './aggregator.js';
export { canonicalJson, hashOf, deepFreeze } from './build.js';
export { MergeState, type TableContent } from './merge.js';
export { diffTables } from './diff.js';
export type * from './types.js';
