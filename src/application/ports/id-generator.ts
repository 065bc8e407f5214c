/** Time-ordered ids (UUIDv7), so keys sort by creation and keyset pages follow insertion order. */
export interface IdGenerator {
  next(): string;
}
