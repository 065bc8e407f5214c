import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { messageAge } from '../../infrastructure/observability/metrics.ts';

/** What became of a message: the label of both metrics. */
export type MessageOutcome = 'processed' | 'duplicate' | 'student_gone' | 'retried' | 'dead_lettered';

export interface WorkerMetrics {
  /** Records one handled message and how long it took, retries included. */
  record(outcome: MessageOutcome, seconds: number): void;
  /** How old a student event was when it was delivered from `queue` (queue lag, per partition). */
  delivered(queue: string, ageSeconds: number): void;
  /** How many partition queues this worker consumes now. */
  partitionsOwned(count: number): void;
}

export function createWorkerMetrics(registry: Registry): WorkerMetrics {
  const messages = new Counter({
    name: 'worker_messages_total',
    help: 'Student events handled by the worker, by outcome.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'worker_message_processing_seconds',
    help: 'Time from delivery to outcome of a student event, in-process retries included.',
    labelNames: ['outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const age = messageAge(registry);
  const owned = new Gauge({
    name: 'worker_partitions_owned',
    help: 'Partition queues of student events this worker consumes (with WORKER_PARTITIONS=1, the one queue).',
    registers: [registry],
  });
  return {
    record(outcome, seconds) {
      messages.inc({ outcome });
      duration.observe({ outcome }, seconds);
    },
    delivered(queue, ageSeconds) {
      age.observe({ queue }, ageSeconds);
    },
    partitionsOwned(count) {
      owned.set(count);
    },
  };
}
