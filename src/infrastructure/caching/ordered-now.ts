// 2^-10 ms: added to an epoch millisecond, exact in a double (2^-12 apart today, 2^-10 from the year 2109 on).
export const TICK = 1 / 1024;

let last = 0;
/**
 * The shared reference clock (Redis's, see CacheConnection) minus this host's wall clock, in milliseconds: 0 until
 * measured, as in the embedded mode, where every instant is taken in this one process.
 */
let offset = 0;
let measured = false;

/**
 * Milliseconds on the shared reference clock: this host's wall clock corrected by the offset last measured against
 * Redis's. Instants compared across instances (a cache entry's, an invalidation's, a stored response's expiry) must
 * all come from here: hosts' own clocks disagree by milliseconds under NTP, by seconds after a VM resumes.
 */
export function sharedNow(): number {
  return Date.now() + offset;
}

/**
 * The shared clock in milliseconds, strictly increasing within the process: an instant taken after another here is
 * greater, also in the same millisecond (fractions break the tie), so whether a read began before a write's
 * invalidation never depends on the two sharing a millisecond. Instants from other instances are on the same
 * reference clock (within the round trip of its measurement), whatever their hosts' clocks say.
 */
export function orderedNow(): number {
  const now = sharedNow();
  last = now > last ? now : last + TICK;
  return last;
}

/**
 * Adopts a measured offset of the reference clock from this host's wall clock. The first measurement replaces the
 * host's own clock: instants taken before it (at start-up, before any request) are not kept in order with later ones.
 * Later measurements only follow drift and steps of the host's clock; instants stay strictly increasing.
 */
export function adoptClockOffset(measuredOffset: number): void {
  if (!measured) last = 0;
  measured = true;
  offset = measuredOffset;
}
