/**
 * For a failure that repeats on every request or write while a dependency is down: says it at most once per
 * interval, so an outage is a few lines rather than one per request. What went unsaid is said at the interval's end,
 * with the last of it and how many more there were, not carried into the next outage.
 */
export class LogThrottle {
  #saidAt = -Infinity;
  #unsaid = 0;
  #last: ((unsaid: number) => void) | undefined;
  #flush: NodeJS.Timeout | undefined;

  constructor(private readonly intervalMs: number) {}

  /** Calls `say` with how many more went unsaid before it since the previous line; within the interval, later. */
  run(say: (unsaid: number) => void): void {
    const now = performance.now();
    if (now - this.#saidAt >= this.intervalMs) return this.#say(say, this.#unsaid);
    this.#unsaid++;
    this.#last = say;
    if (this.#flush !== undefined) return;
    this.#flush = setTimeout(
      () => {
        this.#flush = undefined;
        if (this.#last) this.#say(this.#last, this.#unsaid - 1);
      },
      this.#saidAt + this.intervalMs - now,
    ).unref();
  }

  #say(say: (unsaid: number) => void, unsaid: number): void {
    this.#saidAt = performance.now();
    this.#unsaid = 0;
    this.#last = undefined;
    say(unsaid);
  }
}
