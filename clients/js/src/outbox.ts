/**
 * Events sent and not yet acknowledged, in the order they were first sent: what is resent after a
 * reconnect. Bounded: past `capacity`, `reserve()` waits until an acknowledgement (or a refusal)
 * makes room, so a producer faster than the server is slowed down instead of growing memory.
 */
export interface Pending<T> {
  id: string;
  frame: string;
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

export class Outbox<T> {
  private readonly entries = new Map<string, Pending<T>>();
  private reserved = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError("the outbox holds at least one event");
  }

  /** Events held (sent or about to be), acknowledged ones excluded. */
  get size(): number {
    return this.entries.size + this.reserved;
  }

  /** Waits for room for one more event, then holds it until `add` or `cancel`. */
  async reserve(): Promise<void> {
    while (this.size >= this.capacity) {
      await new Promise<void>((wake) => this.waiting.push(wake));
    }
    this.reserved += 1;
  }

  /** Gives back a reservation that will not be used. */
  cancel(): void {
    this.reserved -= 1;
    this.wakeOne();
  }

  /** Stores a reserved event. */
  add(entry: Pending<T>): void {
    this.reserved -= 1;
    this.entries.set(entry.id, entry);
  }

  /** Removes and returns event `id` (its acknowledgement or refusal came). */
  take(id: string): Pending<T> | undefined {
    const e = this.entries.get(id);
    if (e) {
      this.entries.delete(id);
      this.wakeOne();
    }
    return e;
  }

  /** Every held event, oldest first: what a new connection sends again. */
  pending(): Pending<T>[] {
    return [...this.entries.values()];
  }

  /** Fails every held event and every waiting producer (the client was closed). */
  failAll(error: Error): void {
    for (const e of this.entries.values()) e.reject(error);
    this.entries.clear();
    // Reservations stay counted: their owners give them back (`cancel`) when they see the close.
    for (const wake of this.waiting.splice(0)) wake();
  }

  private wakeOne(): void {
    this.waiting.shift()?.();
  }
}
