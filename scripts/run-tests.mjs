// Runs every *.test.ts under node:test. Node 20's runner does not expand globs, so the files are listed here.
// Usage: node scripts/run-tests.mjs [path-substring ...]   (no arguments: every test file)
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const roots = ['src', 'test', ...readdirSync('packages').map((name) => join('packages', name))];
const skip = new Set(['node_modules', '.data', 'test-artifacts']);

function findTests(dir) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    if (skip.has(name)) return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return findTests(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const filters = process.argv.slice(2);
const files = roots
  .flatMap(findTests)
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

// Fault tests stop and restart shared servers (RabbitMQ, a worker process), so they run after everything
// else, one file at a time, where they cannot disturb other tests.
const phases = [
  { files: files.filter((file) => !file.endsWith('.fault.test.ts')), concurrency: 2 },
  { files: files.filter((file) => file.endsWith('.fault.test.ts')), concurrency: 1 },
].filter((phase) => phase.files.length > 0);

/** Runs one phase under node:test; readable progress on stdout, counts to a file. */
function runPhase({ files: phaseFiles, concurrency }) {
  const summaryFile = join(mkdtempSync(join(tmpdir(), 'tbe-tests-')), 'summary.json');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      `--test-concurrency=${concurrency}`,
      '--test-timeout=300000',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      '--test-reporter=./scripts/summary-reporter.mjs',
      `--test-reporter-destination=${summaryFile}`,
      ...phaseFiles,
    ],
    { stdio: 'inherit' },
  );
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      let counts = { passed: 0, failed: 1, skipped: 0, reasons: ['no test summary was written'] };
      try {
        counts = JSON.parse(readFileSync(summaryFile, 'utf8'));
      } catch {
        // keep the failure above
      }
      resolve({ ok: code === 0 && !signal, counts });
    }),
  );
}

const total = { passed: 0, failed: 0, skipped: 0, reasons: [] };
let ok = true;
for (const phase of phases) {
  const result = await runPhase(phase);
  ok &&= result.ok;
  for (const key of ['passed', 'failed', 'skipped']) total[key] += result.counts[key];
  total.reasons.push(...result.counts.reasons);
}
// The last line of the run: the count of tests, read by CI.
process.stdout.write(
  `\n${total.reasons.map((reason) => `${reason}\n`).join('')}${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`,
);
process.exit(ok ? 0 : 1);
