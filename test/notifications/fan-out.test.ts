// LogFanOut's catch-up over the memory ring: never a silent gap, and no reading for a reader that left.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReplayLogEntry } from '../../src/application/ports/replay-log.ts';
import { LogFanOut, type ResumingReader } from '../../src/apps/notifications/fan-out.ts';
import { MemoryRingReplayLog } from '../../src/infrastructure/replay-log/memory-ring-replay-log.ts';

const WRITER = 'writer';
const LIMITS = { maxQueuedBytes: 1024 * 1024 };

/** A ring that counts its page reads. */
class CountingRing extends MemoryRingReplayLog {
  reads = 0;

  override async readAfter(afterId: string, limit: number): Promise<readonly ReplayLogEntry[]> {
    this.reads++;
    return super.readAfter(afterId, limit);
  }
}

async function filledRing(maxEntries: number, count: number) {
  const log = new CountingRing({ maxEntries });
  await log.claimWriter(WRITER, 60_000);
  let appended = 0;
  const append = async (more: number) => {
    for (const end = appended + more; appended < end; appended++)
      await log.append(
        { messageId: `m${appended}`, type: 'StudentCreated', subject: 's', data: `${appended}` },
        WRITER,
      );
  };
  await append(count);
  const fanOut = new LogFanOut(log);
  await fanOut.start();
  return { log, fanOut, append };
}

/** Records what it is given; `fellBehind` as a marker between entries. */
function recordingReader(onDeliver: (delivered: number) => void | Promise<void> = () => undefined) {
  const got: (number | 'fellBehind')[] = [];
  const reader: ResumingReader = {
    async deliver(entry) {
      got.push(Number(entry.data));
      await onDeliver(got.length);
    },
    fellBehind() {
      got.push('fellBehind');
    },
    overflowed: () => assert.fail('no overflow expected'),
  };
  return { got, reader };
}

test('a reader the log trims past while it catches up is told it fell behind, then gets live entries: never a silent gap', async () => {
  const { log, fanOut, append } = await filledRing(1_000, 1_000);
  let release = () => {};
  const stalled = new Promise<void>((resolve) => (release = resolve));
  // A slow client: its socket stops draining in the middle of the first page.
  const { got, reader } = recordingReader((delivered) => (delivered === 400 ? stalled : undefined));
  const { caughtUp } = fanOut.resume((await log.retention()).firstId!, reader, LIMITS);
  await new Promise((resolve) => setTimeout(resolve, 20));
  await append(700);
  release();
  await caughtUp;
  await append(1);
  const reset = got.indexOf('fellBehind');
  assert.ok(reset > 0, 'told it fell behind');
  const before = got.slice(0, reset) as number[];
  assert.deepEqual(
    before,
    Array.from({ length: before.length }, (_, n) => n + 1),
    'no gap before it',
  );
  assert.deepEqual(got.slice(reset + 1), [1_700], 'after it, the live entries');
  await fanOut.stop();
});

test('a reader whose id is trimmed before the first read is told it fell behind', async () => {
  const { log, fanOut, append } = await filledRing(10, 10);
  const { firstId } = await log.retention();
  await append(5);
  const { got, reader } = recordingReader();
  await fanOut.resume(firstId!, reader, LIMITS).caughtUp;
  assert.deepEqual(got, ['fellBehind']);
  await fanOut.stop();
});

test('a reader that leaves in the middle of its catch-up stops the reading of the log', async () => {
  const { log, fanOut } = await filledRing(5_000, 5_000);
  let unsubscribe = () => {};
  const { got, reader } = recordingReader((delivered) => (delivered === 1 ? unsubscribe() : undefined));
  const readsBefore = log.reads;
  // From the first entry, not 0-0: a memory ring begins later than that, and a reader from 0-0 would be reset to
  // the live end, with nothing to catch up on.
  const resumption = fanOut.resume((await log.retention()).firstId!, reader, { ...LIMITS, pageSize: 100 });
  unsubscribe = () => resumption.unsubscribe();
  await resumption.caughtUp;
  assert.deepEqual(got, [1], 'nothing sent after it left');
  assert.equal(log.reads - readsBefore, 1, 'no page read after it left');
  await fanOut.stop();
});

for (const when of ['before', 'after'] as const)
  test(`entries appended while a reader's last page is being read (${when} the read) reach it once each, in order`, async () => {
    const { log, fanOut, append } = await filledRing(1_000, 10);
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let reading = () => {};
    const readStarted = new Promise<void>((resolve) => (reading = resolve));
    // The page read is slow: the live entries come in while it is under way, before or after it reads the log.
    const read = log.readAfter.bind(log);
    log.readAfter = async (afterId, limit) => {
      reading();
      if (when === 'before') await held;
      const page = await read(afterId, limit);
      if (when === 'after') await held;
      return page;
    };
    const { got, reader } = recordingReader();
    const { caughtUp } = fanOut.resume((await log.retention()).firstId!, reader, LIMITS);
    await readStarted;
    await append(5);
    const { lastId } = await log.retention();
    while (fanOut.position !== lastId) await new Promise((resolve) => setTimeout(resolve, 1));
    release();
    await caughtUp;
    await append(1);
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(
      got,
      Array.from({ length: 15 }, (_, n) => n + 1),
      'the rest of the log, the entries that came in meanwhile, then the live one: each once',
    );
    await fanOut.stop();
  });
