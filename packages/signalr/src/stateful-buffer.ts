import type { HubMessage } from './protocol/messages.ts';
import { isTrackable } from './protocol/messages.ts';

/**
 * Stateful reconnect bookkeeping for one connection (spec §7). Outbound trackable messages are kept
 * until the client acks them; inbound ones are numbered to drop duplicates replayed by the client.
 */
export class StatefulBuffer {
  private entries: { readonly id: number; readonly bytes: Buffer }[] = [];
  private bufferedBytes = 0;
  private sentCount = 0;
  private nextInbound = 1;
  private latestInbound = 0;
  private lastAckSent = 0;
  /** After a resume, everything but the client's Sequence message is dropped. */
  private awaitingSequence = false;

  constructor(private readonly limit: number) {}

  /** Whether another message may be sent now; like ASP.NET's MessageBuffer, the last one may overshoot the limit. */
  hasRoom(): boolean {
    return this.bufferedBytes < this.limit;
  }

  /** Records an outbound trackable message. */
  push(bytes: Buffer): void {
    this.sentCount++;
    this.entries.push({ id: this.sentCount, bytes });
    this.bufferedBytes += bytes.length;
  }

  /** Drops the acked messages; true if that freed any space. */
  ack(sequenceId: number): boolean {
    let count = 0;
    while (count < this.entries.length && this.entries[count]!.id <= sequenceId) {
      this.bufferedBytes -= this.entries[count]!.bytes.length;
      count++;
    }
    if (count > 0) this.entries.splice(0, count);
    return count > 0;
  }

  /** What a resumed socket must receive first: the Sequence id, then the unacked records in order. */
  resume(): { readonly sequenceId: number; readonly records: readonly Buffer[] } {
    this.awaitingSequence = true;
    return {
      sequenceId: this.entries[0]?.id ?? this.sentCount + 1,
      records: this.unacked(),
    };
  }

  unacked(): Buffer[] {
    return this.entries.map((entry) => entry.bytes);
  }

  /** Applies the client's Sequence message; false if it claims more than we have received. */
  resetInbound(sequenceId: number): boolean {
    if (sequenceId > this.nextInbound) return false;
    this.nextInbound = sequenceId;
    this.awaitingSequence = false;
    return true;
  }

  /** Whether an inbound message should be processed (not a duplicate, not before the Sequence). */
  accept(message: HubMessage): boolean {
    if (this.awaitingSequence) return message.type === 9;
    if (!isTrackable(message)) return true;
    const id = this.nextInbound++;
    if (id <= this.latestInbound) return false;
    this.latestInbound = id;
    return true;
  }

  /** The Ack to send, if anything new arrived since the last one. */
  takeAck(): number | undefined {
    if (this.latestInbound === this.lastAckSent) return undefined;
    this.lastAckSent = this.latestInbound;
    return this.latestInbound;
  }
}
