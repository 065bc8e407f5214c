// What the hostile-input suite counts, and the checks every input goes through: the property runner, the
// prototype-pollution check and the crash monitor. One process runs the whole suite (hostile.test.ts), so
// the closing summary line adds up every part.
import assert from 'node:assert/strict';
import fc from 'fast-check';

export const tally = {
  inputs: 0,
  serverErrors: 0,
  crashes: 0,
  storedFromInvalid: 0,
  prototypePollution: 0,
};

/** HOSTILE_SEED=<n> replays a run (fast-check prints the seed and the failing path as well). */
export const SEED = Number(process.env.HOSTILE_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** HOSTILE_RUNS_FACTOR=10 tries ten times as many inputs per property, for a deeper run than CI's. */
const RUNS_FACTOR = Number(process.env.HOSTILE_RUNS_FACTOR ?? 1);

// Uncaught errors anywhere in the process (server code runs in it) are crashes, whatever test is running.
process.on('uncaughtExceptionMonitor', (error) => {
  tally.crashes++;
  console.error('hostile input: uncaught exception', error);
});
process.on('unhandledRejection', (reason) => {
  tally.crashes++;
  console.error('hostile input: unhandled rejection', reason);
});

const PROTOTYPES = { Object: Object.prototype, Array: Array.prototype, String: String.prototype } as const;
const pristine = Object.fromEntries(
  Object.entries(PROTOTYPES).map(([name, proto]) => [name, Reflect.ownKeys(proto).map(String).sort()]),
);

/** Fails (and counts) when a built-in prototype gained a property, or `{}` inherits one it should not. */
export function assertNoPrototypePollution(): void {
  const probe = {} as Record<string, unknown>;
  const changed = Object.entries(PROTOTYPES).filter(
    ([name, proto]) => Reflect.ownKeys(proto).map(String).sort().join() !== pristine[name]?.join(),
  );
  const inherited = ['polluted', 'isAdmin', 'x', 'injected'].filter((key) => probe[key] !== undefined);
  if (changed.length > 0 || inherited.length > 0) {
    tally.prototypePollution++;
    assert.fail(`prototype pollution: ${changed.map(([name]) => name).join(', ')} ${inherited.join(', ')}`);
  }
}

/** Fails (and counts) when a parsed value is not made of plain objects and arrays (its prototype was set). */
export function assertPlainData(value: unknown, where: string): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    const proto: unknown = Object.getPrototypeOf(node);
    if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) {
      tally.prototypePollution++;
      assert.fail(`${where}: an object's prototype was replaced by the input`);
    }
    stack.push(...Object.values(node));
  }
}

export function countServerError(status: number, what: string): void {
  if (status < 500) return;
  tally.serverErrors++;
  assert.fail(`${what} answered ${status}`);
}

export function countStoredFromInvalid(changed: boolean, what: string): void {
  if (!changed) return;
  tally.storedFromInvalid++;
  assert.fail(`${what}: stored something from invalid input`);
}

export function countCrash(alive: boolean, what: string): void {
  if (alive) return;
  tally.crashes++;
  assert.fail(`${what}: the server stopped answering`);
}

/**
 * Runs one property over `runs` generated inputs (times HOSTILE_RUNS_FACTOR), checks for prototype pollution and
 * crashes after each, and prints how many inputs were tried (shrinking included).
 */
export async function property<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  check: (input: T) => Promise<void>,
  runs: number,
): Promise<void> {
  let tried = 0;
  const crashesBefore = tally.crashes;
  try {
    await fc.assert(
      fc.asyncProperty(arbitrary, async (input) => {
        tried++;
        tally.inputs++;
        await check(input);
        assertNoPrototypePollution();
        assert.equal(tally.crashes, crashesBefore, 'an uncaught error happened while handling the input');
      }),
      { numRuns: Math.max(1, Math.round(runs * RUNS_FACTOR)), seed: SEED },
    );
  } catch (error) {
    throw readableFailure(error);
  } finally {
    console.log(`hostile input: ${name}: ${tried} inputs tried`);
  }
}

/** Both ends of a long text: what was sent starts it, what went wrong ends it. */
const shorten = (text: string) =>
  text.length <= 2_000
    ? text
    : `${text.slice(0, 1_000)} …(${text.length - 2_000} characters)… ${text.slice(-1_000)}`;

/** fast-check's report (seed, path, counterexample) and the failed assertion with its stack, each kept readable. */
function readableFailure(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(error));
  const cause = error.cause instanceof Error ? error.cause : undefined;
  const stack = cause?.stack?.split('\n').filter((line) => line.startsWith('    at ')) ?? [];
  return new Error(
    [shorten(error.message), cause ? `Caused by: ${shorten(cause.message)}` : '', ...stack].join('\n'),
  );
}

/** Polls `condition` every few milliseconds (inputs run one after another, so latency adds up) until it holds. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export function summary(): string {
  return (
    `hostile input: ${tally.inputs} inputs tried, 5xx ${tally.serverErrors}, crashes ${tally.crashes}, ` +
    `stored from invalid input ${tally.storedFromInvalid}, prototype pollution ${tally.prototypePollution}`
  );
}
