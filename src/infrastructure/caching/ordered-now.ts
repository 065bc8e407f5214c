// 2^-10 ms: added to an epoch millisecond, exact in a double (2^-12 apart today, 2^-10 from the year 2109 on).
export const TICK = 1 / 1024;

let last = 0;

/**
 * The wall clock in milliseconds, strictly increasing within the process: an instant taken after another here is
 * greater, also in the same millisecond (fractions break the tie), so whether a read began before a write's
 * invalidation never depends on the two sharing a millisecond. Instants that come from other instances were taken on
 * their clocks: comparing them with ours assumes the hosts' clocks agree (NTP keeps them within a millisecond or so);
 * a reader whose clock is ahead of a writer's by d can take a read that began up to d before the write for current.
 */
export function orderedNow(): number {
  const now = Date.now();
  last = now > last ? now : last + TICK;
  return last;
}
