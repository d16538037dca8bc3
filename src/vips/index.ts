/**
 * Named-VIP address allocation: stable addresses from 11.0.0.0/8 (fd01:c::/64), recorded in the store.
 * The `vips` table stage (src/stages.ts) runs every table through `VipAllocator.annotate` before the data
 * planes and DNS see it.
 */
export { VipAllocator, initialOffset, NAME_PREFIX, IP_PREFIX, type VipAllocatorOptions, type VipFamily } from './allocator.js';
