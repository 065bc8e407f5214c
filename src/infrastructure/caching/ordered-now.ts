// 2^-10 ms: added to an epoch millisecond, exact in a double (2^-12 apart today, 2^-10 from the year 2109 on).
export const TICK = 1 / 1024;

let last = 0;
/** Redis's clock minus this host's wall clock, in milliseconds: 0 until a measurement disagrees (never in memory). */
let offset = 0;
let corrected = false;

/**
 * Milliseconds on the shared reference clock: this host's wall clock, corrected by Redis's where a measurement showed
 * them apart. Instants compared across instances (a cache entry's, an invalidation's, a stored response's expiry)
 * must all come from here: hosts' own clocks agree within milliseconds under NTP, but not after a VM resumes.
 */
export function sharedNow(): number {
  return Date.now() + offset;
}

/**
 * The shared clock in milliseconds, strictly increasing within the process: an instant taken after another here is
 * greater, also in the same millisecond (fractions break the tie), so whether a read began before a write's
 * invalidation never depends on the two sharing a millisecond. Instants from other instances are on the same
 * reference clock, whatever their hosts' clocks say.
 */
export function orderedNow(): number {
  const now = sharedNow();
  last = now > last ? now : last + TICK;
  return last;
}

/**
 * A measurement found Redis's clock minus ours within [lowest, highest]. The offset kept agrees with it already (the
 * usual case, hosts under NTP: it stays as it is, exactly, not moved by the measurement's noise), or moves to the
 * nearer bound, the smallest correction that does. Returns whether it moved. The first correction replaces the
 * host's clock: instants taken before it (at start-up, before any request) are not kept in order with later ones.
 */
export function correctClockOffset(lowest: number, highest: number): boolean {
  const agreeing = Math.min(Math.max(offset, lowest), highest);
  if (agreeing === offset) return false;
  if (!corrected) last = 0;
  corrected = true;
  offset = agreeing;
  return true;
}
