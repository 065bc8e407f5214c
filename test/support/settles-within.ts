/** Whether `promise` settles (resolves or rejects) within `ms`: for what must not hang, such as a stop. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<'settled' | 'still pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'still pending'>(
    (resolve) => (timer = setTimeout(resolve, ms, 'still pending')),
  );
  return Promise.race([
    promise.then(
      () => 'settled' as const,
      () => 'settled' as const,
    ),
    pending,
  ]).finally(() => clearTimeout(timer));
}
