/**
 * For a failure that repeats on every request or write while a dependency is down: says it at most once per
 * interval, with how many times it was not said since, so an outage is a few lines rather than one per request.
 */
export class LogThrottle {
  #saidAt = -Infinity;
  #unsaid = 0;

  constructor(private readonly intervalMs: number) {}

  /** Calls `say` with the number of calls left unsaid since it last did; within the interval, only counts. */
  run(say: (unsaid: number) => void): void {
    const now = performance.now();
    if (now - this.#saidAt < this.intervalMs) {
      this.#unsaid++;
      return;
    }
    const unsaid = this.#unsaid;
    this.#saidAt = now;
    this.#unsaid = 0;
    say(unsaid);
  }
}
