import type { Backplane, BackplaneListener, BackplaneMessage } from './backplane.ts';

/** An in-process backplane: hub servers sharing one instance behave like a cluster (tests, single process). */
export class MemoryBackplane implements Backplane {
  private readonly listeners = new Set<BackplaneListener>();

  async subscribe(listener: BackplaneListener): Promise<() => Promise<void>> {
    this.listeners.add(listener);
    return async () => {
      this.listeners.delete(listener);
    };
  }

  async publish(message: BackplaneMessage): Promise<void> {
    // Delivered on a later turn, like a network hop, so publishers never re-enter themselves.
    queueMicrotask(() => {
      for (const listener of this.listeners) listener(message);
    });
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
