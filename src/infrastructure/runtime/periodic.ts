export interface Periodic {
  /** The run started at once. */
  readonly first: Promise<void>;
  /** Ends the schedule and waits for a run under way. */
  stop(): Promise<void>;
}

/**
 * Runs `task` now and then every `everyMs`, one run at a time: a tick that comes while a run is still under way is
 * skipped, so an overrun neither overlaps the next run nor piles runs up. `task` handles its own failures.
 */
export function runPeriodically(task: () => Promise<void>, everyMs: number): Periodic {
  let busy = false;
  let running = Promise.resolve();
  const run = () => {
    busy = true;
    running = task().finally(() => {
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
      await running;
    },
  };
}
