export interface Periodic {
  /** The run started at once. */
  readonly first: Promise<void>;
  /** Ends the schedule, aborts the signal the run under way was given, and waits for it. */
  stop(): Promise<void>;
}

/**
 * Runs `task` now and then every `everyMs`, one run at a time: a tick that comes while a run is still under way is
 * skipped, so an overrun neither overlaps the next run nor piles runs up. `task` handles its own failures. A long
 * task (a retention catching up on millions of rows) watches `stopping`, so stop() need not wait for all of it.
 */
export function runPeriodically(task: (stopping: AbortSignal) => Promise<void>, everyMs: number): Periodic {
  let busy = false;
  let running = Promise.resolve();
  const stopping = new AbortController();
  const run = () => {
    busy = true;
    running = task(stopping.signal).finally(() => {
      busy = false;
    });
  };
  run();
  const first = running;
  const timer = setInterval(() => {
    if (!busy) run();
  }, everyMs).unref();
  return {
    first,
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await running;
    },
  };
}
