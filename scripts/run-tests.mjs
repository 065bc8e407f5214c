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

// Readable progress on stdout; the one-line count goes to a file and is printed last, after everything else.
const summaryFile = join(mkdtempSync(join(tmpdir(), 'tbe-tests-')), 'summary.txt');
const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=2',
    '--test-timeout=300000',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=./scripts/summary-reporter.mjs',
    `--test-reporter-destination=${summaryFile}`,
    ...files,
  ],
  { stdio: 'inherit' },
);
child.on('exit', (code, signal) => {
  try {
    process.stdout.write(`\n${readFileSync(summaryFile, 'utf8')}`);
  } catch {
    process.stdout.write('\nno test summary was written\n');
  }
  process.exit(code ?? (signal ? 1 : 0));
});
