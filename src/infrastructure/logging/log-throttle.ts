/**
 * Called with how many more went unsaid before this one since the previous line, and, when said late (at the
 * interval's end), `lastAt`: when this one happened, as ISO time. The line is stamped with when it is written.
 */
export type SayThrottled = (unsaid: number, lastAt?: string) => void;

/**
 * For a failure that repeats on every request or write while a dependency is down: says it at most once per
 * interval, so an outage is a few lines rather than one per request. What went unsaid is said at the interval's end,
 * with the last of it, how many more there were and when the last happened, not carried into the next outage.
 */
export class LogThrottle {
  #saidAt = -Infinity;
  #unsaid = 0;
  #last: { say: SayThrottled; at: number } | undefined;
  #flush: NodeJS.Timeout | undefined;

  constructor(private readonly intervalMs: number) {}

  /** Calls `say` at once when the previous line is an interval old; within the interval, at its end. */
  run(say: SayThrottled): void {
    const now = performance.now();
    if (now - this.#saidAt >= this.intervalMs) return this.#say(say, this.#unsaid);
    this.#unsaid++;
    this.#last = { say, at: Date.now() };
    if (this.#flush !== undefined) return;
    this.#flush = setTimeout(
      () => {
        this.#flush = undefined;
        const last = this.#last;
        if (last) this.#say(last.say, this.#unsaid - 1, new Date(last.at).toISOString());
      },
      this.#saidAt + this.intervalMs - now,
    ).unref();
  }

  /**
   * The condition is over, and its caller says so: what is held back is dropped rather than said after that line,
   * where it would read as a new failure, and the next occurrence (a new outage) is said at once.
   */
  reset(): void {
    clearTimeout(this.#flush);
    this.#flush = undefined;
    this.#saidAt = -Infinity;
    this.#unsaid = 0;
    this.#last = undefined;
  }

  #say(say: SayThrottled, unsaid: number, lastAt?: string): void {
    this.#saidAt = performance.now();
    this.#unsaid = 0;
    this.#last = undefined;
    say(unsaid, lastAt);
  }
}
