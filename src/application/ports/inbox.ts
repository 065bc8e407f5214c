export interface Inbox {
  /** Records that `consumer` handled `messageId`; false when it already had (a redelivery). */
  markProcessed(messageId: string, consumer: string): Promise<boolean>;
}
