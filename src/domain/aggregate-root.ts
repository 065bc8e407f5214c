/** Records domain events as state changes happen; the unit of work pulls them and stores them with the state. */
export abstract class AggregateRoot<TEvent> {
  #pendingEvents: TEvent[] = [];

  protected record(event: TEvent): void {
    this.#pendingEvents.push(event);
  }

  pullDomainEvents(): TEvent[] {
    const events = this.#pendingEvents;
    this.#pendingEvents = [];
    return events;
  }
}
