// How many long-lived connections (SSE streams and hub connections together) one instance, and one user, may hold.
// Each keeps a socket and some memory for as long as it lasts: without a bound, one client could open them until the
// process runs out of file descriptors, and every role in it stops answering.

/** Why a connection was turned away: the instance is full, or the user holds their share already. */
export type Refusal = 'instance' | 'user';

export type Slot = { readonly release: () => void } | { readonly refused: Refusal };

export class ConnectionLimits {
  #open = 0;
  readonly #byUser = new Map<string, number>();

  constructor(
    readonly maxConnections: number,
    readonly maxPerUser: number,
    /** Told of every connection turned away (a metric: a turned-away SSE client gets a 200 that says retry). */
    private readonly onRefused: (refusal: Refusal) => void = () => undefined,
  ) {}

  /** A slot for a connection of `user` (a token's subject; none when auth is off), or why there is none. */
  take(user: string | undefined): Slot {
    const held = user === undefined ? 0 : (this.#byUser.get(user) ?? 0);
    const refusal =
      this.#open >= this.maxConnections ? 'instance' : held >= this.maxPerUser ? 'user' : undefined;
    if (refusal) {
      this.onRefused(refusal);
      return { refused: refusal };
    }
    this.#open++;
    if (user !== undefined) this.#byUser.set(user, held + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#open--;
        if (user === undefined) return;
        const left = this.#byUser.get(user)! - 1;
        if (left === 0) this.#byUser.delete(user);
        else this.#byUser.set(user, left);
      },
    };
  }

  /** What a refused client is told. */
  explain(refusal: Refusal): string {
    return refusal === 'user'
      ? `This user has ${this.maxPerUser} connections open already (SSE streams and hub connections together): ` +
          'close one first.'
      : 'This instance holds as many connections as it may; try again later.';
  }
}
