// Identical PUTs with the worker running, as `npm start` runs it: the worker writes every student a PUT changed
// (`updates += 1`) within milliseconds, and a retry must still get the first answer; another write, though, must not
// be answered for by an older PUT.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { until } from '../support/until.ts';
import { embeddedRoles } from '../support/all-roles.ts';

const roles = embeddedRoles();
let api: string;
before(async () => {
  ({ api } = await roles.start());
});
after(() => roles.stop());

const studentOf = async (id: string) =>
  (await (await fetch(`${api}/api/students/${id}`, { headers: { 'cache-control': 'no-cache' } })).json()) as {
    firstName: string;
    updates: number;
    version: number;
  };

const put = (id: string, firstName: string) =>
  fetch(`${api}/api/students/${id}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ firstName, lastName: 'Lamarr', email: 'hedy@example.com' }),
  });

test("a PUT retried after the worker's write gets its first answer; after another PUT or a DELETE it runs again", async () => {
  const created = await fetch(`${api}/api/students`, { method: 'POST' });
  const { id } = (await created.json()) as { id: string };
  await until(async () => (await studentOf(id)).updates === 1, 'the worker to process the create');

  const first = await put(id, 'Hedy');
  assert.equal(first.status, 200);
  const firstBody = await first.text();
  await until(async () => (await studentOf(id)).updates === 2, 'the worker to process the update');
  const retried = await put(id, 'Hedy');
  assert.equal(retried.headers.get('x-deduplicated'), 'true', 'the worker wrote it, nobody else did');
  assert.equal(await retried.text(), firstBody);
  assert.equal((await studentOf(id)).updates, 2, 'not applied twice');

  assert.equal((await put(id, 'Hedwig')).status, 200);
  const again = await put(id, 'Hedy');
  assert.equal(again.headers.get('x-deduplicated'), null, 'another PUT came between');
  assert.equal((await studentOf(id)).firstName, 'Hedy');

  assert.equal((await fetch(`${api}/api/students/${id}`, { method: 'DELETE' })).status, 204);
  assert.equal((await put(id, 'Hedy')).status, 404, 'no answer from before the delete');
});
