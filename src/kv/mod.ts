// Paged KV block manager: block ids, refcounts, prefix cache, copy-on-write, pool sizing. No backend code here.

export {
  type AppendResult,
  type BlockHashFn,
  type CopyOp,
  KvManager,
  type KvManagerOptions,
  type KvStats,
  type PromptAllocation,
} from "./kv_manager.ts";
export { numBlocksFor } from "./capacity.ts";
export { hashBlock, NO_KEY, ROOT_KEY } from "./hash.ts";
