// A node:test reporter that ends the run with one plain line: "N passed, N failed, N skipped".
// Skipped suites (a server was unreachable) count once each, with their reason listed above the line.
export default async function* summaryReporter(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const reasons = [];
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { data } = event;
    const isSuite = data.details?.type === 'suite';
    if (data.skip !== undefined && data.skip !== false) {
      skipped++;
      reasons.push(`skipped: ${data.name}${typeof data.skip === 'string' ? ` (${data.skip})` : ''}`);
    } else if (isSuite) {
      if (event.type === 'test:fail' && data.details?.error?.failureType !== 'subtestsFailed') failed++;
    } else if (event.type === 'test:pass') passed++;
    else failed++;
  }
  yield `${reasons.join('\n')}${reasons.length ? '\n' : ''}${passed} passed, ${failed} failed, ${skipped} skipped\n`;
}
