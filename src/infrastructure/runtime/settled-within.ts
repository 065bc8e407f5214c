/**
 * What `promise` gives within `ms`, or undefined once `ms` has passed first (a rejection is passed on). For a wait
 * that must stay bounded: a peer that does not answer must not hold a stop, a start or a health probe.
 */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `promise` settled within `ms` (a rejection too: it answered), for what a stop waits on. */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  return (await within(settled, ms)) ?? false;
}
