// Continuous-batching scheduler: sequences, FCFS admission, chunked prefill, preemption by recompute, step inputs.

export { type FinishReason, Sequence, type SequenceOptions, type SequenceStatus } from "./sequence.ts";
export { decodeRunStep, Scheduler, type SchedulerConfig, type SchedulerCounters } from "./scheduler.ts";
export type { ScheduledBatch, ScheduledSeq, SeqUpdate } from "./batch.ts";
export { buildStepInputs, type BuildStepInputsOptions } from "./step_inputs.ts";
