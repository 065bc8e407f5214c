/** Items a client may send ahead of the hub method reading them: ASP.NET's default StreamBufferCapacity. */
const UPLOAD_BUFFER_CAPACITY = 10;

/**
 * A client-to-server stream as the hub method sees it: an AsyncIterable fed by StreamItem messages and
 * ended by the client's Completion for the stream id. Like ASP.NET's bounded channel, a full buffer makes
 * the connection stop reading from the client until the method takes an item (`onRoom`).
 */
export class UploadStream implements AsyncIterable<unknown> {
  private readonly items: unknown[] = [];
  private waiting: ((result: IteratorResult<unknown>) => void) | undefined;
  private failWaiting: ((error: Error) => void) | undefined;
  private done = false;
  private error: Error | undefined;

  constructor(private readonly onRoom: () => void) {}

  push(item: unknown): void {
    if (this.done) return;
    if (this.waiting) {
      this.take()({ value: item, done: false });
      return;
    }
    this.items.push(item);
  }

  /** Full: the connection reads nothing more from the client until `onRoom`. */
  isFull(): boolean {
    return this.items.length >= UPLOAD_BUFFER_CAPACITY;
  }

  complete(error?: Error): void {
    if (this.done) return;
    this.done = true;
    this.error = error;
    if (!this.waiting) return;
    const fail = this.failWaiting!;
    const resolve = this.take();
    if (error) fail(error);
    else resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return {
      next: () => {
        if (this.items.length > 0) {
          const wasFull = this.isFull();
          const value = this.items.shift();
          // Deferred, so that the messages this lets through are not handled inside the method's next().
          if (wasFull) queueMicrotask(this.onRoom);
          return Promise.resolve({ value, done: false });
        }
        if (this.done) {
          return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
    };
  }

  private take(): (result: IteratorResult<unknown>) => void {
    const resolve = this.waiting!;
    this.waiting = undefined;
    this.failWaiting = undefined;
    return resolve;
  }
}
