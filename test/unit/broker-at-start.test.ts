// A consuming role declares its topology once the broker answers, however long that takes: a connection lost on
// the way is no reason to give up, and a broker that is away is reported once; a broker that answers and refuses
// the topology stops the start with its reason.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MessageBus } from '../../src/application/ports/message-bus.ts';
import { MESSAGING_TOPOLOGY } from '../../src/contracts/messaging.ts';
import {
  BROKER_CONNECT_WAIT_MS,
  declareOnceBrokerAnswers,
} from '../../src/infrastructure/runtime/broker-at-start.ts';

/** What one declaration does to the scripted broker: resolves, or throws as the broker would. */
type Declaration = (broker: ScriptedBroker) => Promise<void>;

interface ScriptedBroker {
  /** The broker answers again from then on (Infinity: not until told). */
  backAt: number;
  declarations: number;
}

/** A broker the test scripts: whether it answers (by time), and what each declaration of the topology does. */
function scriptedBroker(script: Declaration[]): { bus: MessageBus; broker: ScriptedBroker } {
  const broker: ScriptedBroker = { backAt: 0, declarations: 0 };
  const bus = {
    status: () => ({ connected: Date.now() >= broker.backAt, adapter: 'scripted' }),
    declareTopology: async () => {
      const declaration = script[broker.declarations++];
      if (!declaration) throw new Error(`declared ${broker.declarations} times, more than scripted`);
      await declaration(broker);
    },
  } as unknown as MessageBus;
  return { bus, broker };
}

/** The connection goes with the declaration; the broker answers again `afterMs` later. */
const connectionLost =
  (afterMs: number): Declaration =>
  async (broker) => {
    broker.backAt = Date.now() + afterMs;
    throw new Error('CONNECTION_FORCED - broker forced connection closure');
  };
const declared: Declaration = async () => {};

describe('declaring the topology once the broker answers', () => {
  test('a connection lost during the declaration is no failure: it is declared again once the broker is back', async () => {
    const { bus, broker } = scriptedBroker([connectionLost(100), declared]);
    let unreachable = 0;
    await declareOnceBrokerAnswers(bus, MESSAGING_TOPOLOGY, {
      signal: new AbortController().signal,
      onUnreachable: () => unreachable++,
    });
    assert.equal(broker.declarations, 2);
    assert.equal(unreachable, 0, 'back within the wait: nothing to report');
  });

  test('a broker away for several waits is reported unreachable once; a connection lost again once it is back is retried too', async () => {
    const { bus, broker } = scriptedBroker([connectionLost(Infinity), connectionLost(100), declared]);
    let unreachable = 0;
    await declareOnceBrokerAnswers(bus, MESSAGING_TOPOLOGY, {
      signal: new AbortController().signal,
      onUnreachable: () => {
        unreachable++;
        // Away for another whole wait and a half after it was reported: the role waits on, saying nothing more.
        if (unreachable === 1) broker.backAt = Date.now() + BROKER_CONNECT_WAIT_MS * 1.5;
      },
    });
    assert.equal(unreachable, 1, 'reported once');
    assert.equal(broker.declarations, 3);
  });

  test("a broker that stays connected and refuses the topology stops the start at once, with the broker's reason", async () => {
    const refusal = new Error(
      "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'students.worker'",
    );
    const { bus, broker } = scriptedBroker([
      async () => {
        throw refusal;
      },
    ]);
    await assert.rejects(
      declareOnceBrokerAnswers(bus, MESSAGING_TOPOLOGY, {
        signal: new AbortController().signal,
        onUnreachable: () => assert.fail('the broker answered'),
      }),
      refusal,
    );
    assert.equal(broker.declarations, 1);
  });

  test('a broker that closes the connection over the declaration twice in a row, answering again at once, refuses it', async () => {
    // RabbitMQ refusing an exchange type it lacks closes the connection, and takes the next one.
    const { bus, broker } = scriptedBroker([connectionLost(50), connectionLost(50)]);
    await assert.rejects(
      declareOnceBrokerAnswers(bus, MESSAGING_TOPOLOGY, {
        signal: new AbortController().signal,
        onUnreachable: () => assert.fail('the broker answered'),
      }),
      /CONNECTION_FORCED/,
    );
    assert.equal(broker.declarations, 2);
  });
});
