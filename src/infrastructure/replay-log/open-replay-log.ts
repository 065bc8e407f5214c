import type { ReplayLog } from '../../application/ports/replay-log.ts';
import type { Logger } from '../logging/logger.ts';
import { MemoryRingReplayLog } from './memory-ring-replay-log.ts';
import { RedisStreamReplayLog } from './redis-stream-replay-log.ts';

export interface ReplayLogOptions {
  /** `memory:` or `redis://…`. */
  readonly redisUrl: string;
  readonly keyPrefix: string;
  readonly maxEntries: number;
  readonly dedupTtlSeconds: number;
}

/** `memory:` is the in-process ring (embedded mode, one process); anything else a Redis stream. */
export async function openReplayLog(options: ReplayLogOptions, logger: Logger): Promise<ReplayLog> {
  if (options.redisUrl === 'memory:') return new MemoryRingReplayLog(options);
  const log = new RedisStreamReplayLog({ url: options.redisUrl, ...options }, logger);
  await log.connected();
  return log;
}
