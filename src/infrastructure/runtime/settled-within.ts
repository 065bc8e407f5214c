/**
 * Waits for `promise` at most `ms`: true when it settled in time (a rejection too: it answered). For what a stop
 * waits on (a broker's close-ok, a last flush): a peer that does not answer must not hold the exit.
 */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
