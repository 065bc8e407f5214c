import { ProtocolError } from './protocol/messages.ts';

/** Items a client may send ahead of the hub method reading them; past it the connection is closed. */
const MAX_QUEUED_ITEMS = 1024;

/**
 * A client-to-server stream as the hub method sees it: an AsyncIterable fed by StreamItem messages and
 * ended by the client's Completion for the stream id.
 */
export class UploadStream implements AsyncIterable<unknown> {
  private readonly items: unknown[] = [];
  private waiting: ((result: IteratorResult<unknown>) => void) | undefined;
  private failWaiting: ((error: Error) => void) | undefined;
  private done = false;
  private error: Error | undefined;

  push(item: unknown): void {
    if (this.done) return;
    if (this.waiting) {
      this.take()({ value: item, done: false });
      return;
    }
    if (this.items.length >= MAX_QUEUED_ITEMS) throw new ProtocolError('Too many unread stream items.');
    this.items.push(item);
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
        if (this.items.length > 0) return Promise.resolve({ value: this.items.shift(), done: false });
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
