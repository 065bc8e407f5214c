import assert from 'node:assert/strict';
import { test } from 'node:test';
import { subjectWaves, type OutboxRow } from '../../src/infrastructure/outbox/outbox-relay.ts';

const row = (id: string, subject: string): OutboxRow => ({
  id,
  exchange: 'notifications',
  routingKey: 'student.cached',
  type: 'StudentCached',
  subject,
  payload: {},
  headers: {},
  occurredAt: new Date('2026-01-01T00:00:00Z'),
});

test('no wave holds two messages of one subject; each subject keeps its order across waves', () => {
  const rows = [row('1', 'a'), row('2', 'b'), row('3', 'a'), row('4', 'a'), row('5', 'c'), row('6', 'b')];

  const waves = subjectWaves(rows).map((wave) => wave.map((message) => message.messageId));

  assert.deepEqual(waves, [['1', '2', '5'], ['3', '6'], ['4']]);
});

test('rows of distinct subjects go out in one wave', () => {
  const waves = subjectWaves([row('1', 'a'), row('2', 'b'), row('3', 'c')]);
  assert.equal(waves.length, 1);
});
