// A node:test reporter that writes the run's counts as JSON, for scripts/run-tests.mjs to add up and print as
// one plain line: "N passed, N failed, N skipped". A skipped suite (its server was unreachable) counts once.
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
  yield JSON.stringify({ passed, failed, skipped, reasons });
}
