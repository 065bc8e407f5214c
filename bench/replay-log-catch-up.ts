// A reader catching up through the whole in-memory replay log (the embedded mode's), in pages, next to the same
// pages sliced from a plain array: reads must not copy the ring, whose size (REPLAY_LOG_MAX_ENTRIES) may be large.
import { randomUUID } from 'node:crypto';
import { EMPTY_LOG_ID } from '../src/application/ports/replay-log.ts';
import { MemoryRingReplayLog } from '../src/infrastructure/replay-log/memory-ring-replay-log.ts';
import type { BenchRow } from './table.ts';

export interface ReplayLogCatchUpOptions {
  readonly entries?: number;
  readonly pageSize?: number;
  readonly rounds?: number;
}

const WRITER = 'bench';

export async function replayLogCatchUp(options: ReplayLogCatchUpOptions = {}): Promise<BenchRow[]> {
  const size = options.entries ?? 200_000;
  const pageSize = options.pageSize ?? 500;
  const rounds = options.rounds ?? 5;
  const log = new MemoryRingReplayLog({ maxEntries: size });
  await log.claimWriter(WRITER, 60_000);
  // Past its size, so the ring has wrapped: its oldest entry is not at index 0.
  for (let n = 0; n < size + size / 3; n++)
    await log.append(
      { messageId: randomUUID(), type: 'StudentUpdated', subject: `student-${n % 100}`, data: `{"n":${n}}` },
      WRITER,
    );
  const kept = await log.readAfter(EMPTY_LOG_ID, size);

  // As a catch-up reads: the log's extent, then a page after the cursor, until none is left.
  const ring = async () => {
    let cursor = EMPTY_LOG_ID;
    let read = 0;
    for (;;) {
      await log.retention();
      const page = await log.readAfter(cursor, pageSize);
      if (page.length === 0) return read;
      read += page.length;
      cursor = page.at(-1)!.id;
    }
  };
  const array = async () => {
    let read = 0;
    for (let start = 0; ; start += pageSize) {
      const page = await Promise.resolve(kept.slice(start, start + pageSize));
      if (page.length === 0) return read;
      read += page.length;
    }
  };
  const rate = async (catchUp: () => Promise<number>) => {
    const started = performance.now();
    const read = await catchUp();
    if (read !== size) throw new Error(`read ${read} of ${size} entries`);
    return Math.round(read / ((performance.now() - started) / 1_000));
  };
  const samples = { array: [] as number[], ring: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    samples.array.push(await rate(array));
    samples.ring.push(await rate(ring));
  }
  await log.close();
  const best = (values: number[]) => Math.max(...values);
  const scenario = `replay log catch-up (${size.toLocaleString('en-US')} entries, pages of ${pageSize}, best of ${rounds})`;
  return [
    { scenario, variant: 'pages sliced from an array (baseline)', rps: best(samples.array), ratio: 1 },
    {
      scenario,
      variant: 'MemoryRingReplayLog, wrapped',
      rps: best(samples.ring),
      ratio: best(samples.ring) / best(samples.array),
      note: 'entries read per second; a copy of the ring per page (the regression this row watches) was ~250× slower',
    },
  ];
}
