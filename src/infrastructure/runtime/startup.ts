/** Between two steps of a start: waits for the step, then ends the start if a stop came meanwhile. */
export type StartStep = <T>(work: Promise<T>) => Promise<T>;

/**
 * A role's start that its stop can cut short. A start can take long (a consuming role waits for the broker), and a
 * stop may come at any point of it: the start then ends at its next step, and the stop waits for that before it
 * undoes what the start had set up, so nothing the start makes afterwards outlives the stop.
 */
export interface Startup {
  /** Aborted once stopping began: for waits inside a step (the broker's). */
  readonly signal: AbortSignal;
  /** Runs `start`, whose steps each go through `step`; once stopping began, it rejects with the stop's reason. */
  run<T>(start: (step: StartStep) => Promise<T>): Promise<T>;
  /** Ends a start under way at its next step (it rejects with `reason`) and resolves once it has ended. */
  stop(reason: string): Promise<void>;
}

export function createStartup(): Startup {
  const stopping = new AbortController();
  let ended: Promise<unknown> = Promise.resolve();
  const step: StartStep = async (work) => {
    const value = await work;
    stopping.signal.throwIfAborted();
    return value;
  };
  return {
    signal: stopping.signal,
    run(start) {
      const running = (async () => {
        // A stop that came first leaves nothing to start.
        stopping.signal.throwIfAborted();
        return start(step);
      })().catch((error: unknown) => {
        // A start that a stop ended says so, whichever step (or a role of its own, stopped too) gave up first.
        stopping.signal.throwIfAborted();
        throw error;
      });
      ended = running.catch(() => undefined);
      return running;
    },
    async stop(reason) {
      stopping.abort(new Error(reason));
      await ended;
    },
  };
}
