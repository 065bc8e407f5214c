/**
 * What Redis keys with a TTL are, for the embedded mode: entries expire, and past `maxEntries` the one written
 * longest ago goes first (a Map keeps insertion order; a write re-inserts).
 */
export class ExpiringMap<V> {
  readonly #entries = new Map<string, { value: V; expiresAt: number }>();
  readonly #maxEntries: number;

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    return entry && entry.expiresAt > Date.now() ? entry.value : undefined;
  }

  set(key: string, value: V, ttlMs: number): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { value, expiresAt: Date.now() + ttlMs });
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Empties the map: the entries not yet expired, oldest first, each with the milliseconds it had left. */
  drain(): [key: string, value: V, ttlMs: number][] {
    const now = Date.now();
    const live = [...this.#entries]
      .filter(([, entry]) => entry.expiresAt > now)
      .map(([key, entry]): [string, V, number] => [key, entry.value, entry.expiresAt - now]);
    this.#entries.clear();
    return live;
  }
}
