export interface Inbox {
  /**
   * Records that `consumer` handled these messages; resolves with those it had not handled before. The others are
   * redeliveries, to be acknowledged without doing anything again.
   */
  markProcessed(messageIds: readonly string[], consumer: string): Promise<ReadonlySet<string>>;
}
