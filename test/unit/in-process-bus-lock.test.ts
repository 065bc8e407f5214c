// The in-process bus's database lock against a scripted database: taken again each time its session is lost, for
// as long as the process runs, and given back, with nothing taken again, once released. (On PostgreSQL, with real
// processes: test/e2e/embedded-bus-one-process.test.ts.)
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database, Leadership } from '../../src/infrastructure/persistence/database.ts';
import { holdInProcessBusLock } from '../../src/infrastructure/runtime/in-process-bus-lock.ts';
import { recordingLogger } from '../support/logger.ts';
import { until } from '../support/until.ts';

/** A session holding the lock: the test ends it (`lose`); releasing it ends it too, as closing a connection does. */
interface ScriptedLease extends Leadership {
  lose(): void;
  released: boolean;
}

function lease(): ScriptedLease {
  let lose!: () => void;
  const lost = new Promise<void>((resolve) => (lose = resolve));
  const scripted: ScriptedLease = {
    lost,
    lose,
    released: false,
    listen: async () => {},
    release: async () => {
      scripted.released = true;
      lose();
    },
  };
  return scripted;
}

/** What the database answers to one try for the lock: taken (a lease), held elsewhere (undefined), or a throw. */
type Answer = () => Promise<ScriptedLease | undefined>;

/** A database whose answers the test scripts (`answers`, in order); with none left, the lock is free. */
function scriptedDatabase(...answers: Answer[]) {
  const scripted = {
    answers,
    leases: [] as ScriptedLease[],
    tries: 0,
    database: {
      tryLead: async () => {
        scripted.tries++;
        const answer = await (scripted.answers.shift() ?? (async () => lease()))();
        if (answer) scripted.leases.push(answer);
        return answer;
      },
    } as unknown as Database,
  };
  return scripted;
}

const heldElsewhere: Answer = async () => undefined;
const notAnswering: Answer = async () => {
  throw new Error('connect ECONNREFUSED');
};
/** Retakes wait 2 s; a little more. */
const RETAKE_MS = 3_000;

describe('the in-process bus lock', { concurrency: true }, () => {
  test('held by another process, it is refused, saying why', async () => {
    const { database } = scriptedDatabase(heldElsewhere);
    await assert.rejects(
      holdInProcessBusLock(database, recordingLogger().logger),
      /Another process already runs on this database with AMQP_URL=memory:/,
    );
  });

  test('a lock lost with its session is taken again, each time it is lost', async () => {
    const scripted = scriptedDatabase();
    const lock = await holdInProcessBusLock(scripted.database, recordingLogger().logger);
    try {
      scripted.leases[0]!.lose();
      await until(() => scripted.leases.length === 2, 'the lock taken again', RETAKE_MS);
      scripted.leases[1]!.lose();
      await until(() => scripted.leases.length === 3, 'the lock taken again after a second loss', RETAKE_MS);
    } finally {
      await lock.release();
    }
  });

  test('lost while the database does not answer, it is taken again once it answers', async () => {
    const scripted = scriptedDatabase();
    const lock = await holdInProcessBusLock(scripted.database, recordingLogger().logger);
    try {
      scripted.answers.push(notAnswering); // the next try finds no database; the one after takes the lock
      scripted.leases[0]!.lose();
      await until(() => scripted.leases.length === 2, 'the lock taken again', 2 * RETAKE_MS);
    } finally {
      await lock.release();
    }
  });

  test('lost and taken meanwhile by another process: said once, and taken again once that one lets go', async () => {
    const scripted = scriptedDatabase();
    const { logger, logged } = recordingLogger();
    const lock = await holdInProcessBusLock(scripted.database, logger);
    try {
      scripted.answers.push(heldElsewhere, heldElsewhere, heldElsewhere);
      scripted.leases[0]!.lose();
      await until(() => scripted.leases.length === 2, 'the lock taken again', 4 * RETAKE_MS);
      const said = logged().match(/started on this database while the lock was lost/g) ?? [];
      assert.equal(said.length, 1, logged());
    } finally {
      await lock.release();
    }
  });

  test('released, it gives its lock back, says nothing, and takes nothing again', async () => {
    const scripted = scriptedDatabase();
    const { logger, logged } = recordingLogger();
    const lock = await holdInProcessBusLock(scripted.database, logger);
    await lock.release();
    assert.equal(scripted.leases[0]!.released, true, 'the lock given back');
    await sleep(RETAKE_MS);
    assert.equal(scripted.tries, 1, 'tried for the lock again after its release');
    assert.equal(logged(), '');
  });

  test('released while it waits to take the lock again, it takes nothing again', async () => {
    const scripted = scriptedDatabase();
    const lock = await holdInProcessBusLock(scripted.database, recordingLogger().logger);
    scripted.leases[0]!.lose();
    await sleep(100);
    await lock.release();
    await sleep(RETAKE_MS);
    assert.equal(scripted.tries, 1, 'tried for the lock again after its release');
  });

  test('released while a retake waits for the database, the lock that retake gets is given back', async () => {
    const scripted = scriptedDatabase();
    const lock = await holdInProcessBusLock(scripted.database, recordingLogger().logger);
    const late = lease();
    let answer!: () => void;
    scripted.answers.push(() => new Promise((resolve) => (answer = () => resolve(late))));
    scripted.leases[0]!.lose();
    await until(() => scripted.tries === 2, 'a retake under way', RETAKE_MS);
    await lock.release();
    answer();
    await until(() => late.released, 'the late lock given back', 1_000);
  });
});
