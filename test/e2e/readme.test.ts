// The README's "Try it" commands, run as written against `npm start`'s entry point (on free ports).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { startAllRoles } from '../support/all-roles.ts';

const run = promisify(execFile);

test("the README's curl commands create, read, update, list and delete a student", async () => {
  const readme = await readFile('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('## Try it'));
  const blocks = [...section.matchAll(/```bash\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
  const script = blocks.find((block) => block.includes('curl -i -X DELETE'));
  assert.ok(script, 'the README has the create … delete block');

  const allRoles = startAllRoles();
  try {
    const { api } = await allRoles.ready;
    const { stdout } = await run('bash', [
      '-euo',
      'pipefail',
      '-c',
      script.replaceAll('http://localhost:5000', api),
    ]);
    assert.match(stdout, /^[0-9a-f-]{36}$/m, 'the id was captured');
    assert.match(stdout, /HTTP\/1\.1 200 OK[\s\S]*etag: "2"[\s\S]*"updates":1/i, 'processed by the worker');
    assert.match(stdout, /"firstName":"Jane"[\s\S]*"version":3/, 'the update with the ETag just read');
    assert.match(stdout, /"items":\[/, 'the list');
    assert.match(stdout, /HTTP\/1\.1 204 No Content/, 'the delete');
  } finally {
    allRoles.child.kill('SIGTERM');
  }
});
