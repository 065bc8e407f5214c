// The original served its wwwroot with UseStaticFiles (and no UseDefaultFiles): its landing page was at
// /index.html. A bookmark of it, or a link from the original's pages, still opens the landing page here.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { AllRolesUrls } from '../../src/all-roles.ts';
import { embeddedRoles } from '../support/all-roles.ts';

const roles = embeddedRoles();
let urls: AllRolesUrls;
before(async () => {
  urls = await roles.start();
});
after(() => roles.stop());

test("the original's /index.html is the landing page", async () => {
  const landing = await fetch(`${urls.pages}/`);
  const original = await fetch(`${urls.pages}/index.html`);
  assert.equal(original.status, 200);
  assert.equal(original.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(await original.text(), await landing.text());
});
