interface PendingCall<I, O> {
  readonly input: I;
  readonly resolve: (output: O) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Gathers the calls made in one turn of the event loop (at most `maxBatchSize`) into one call of `runBatch`, which
 * returns one output per input, in order. When a batch fails, its inputs run again one by one, so an input that
 * fails, fails alone and the others still succeed.
 */
export function microBatch<I, O>(
  runBatch: (inputs: readonly I[]) => Promise<readonly O[]>,
  maxBatchSize: number,
): (input: I) => Promise<O> {
  let pending: PendingCall<I, O>[] = [];
  let scheduled = false;

  const runOne = (call: PendingCall<I, O>) =>
    runBatch([call.input]).then(([output]) => call.resolve(output as O), call.reject);

  const flush = () => {
    scheduled = false;
    const batch = pending;
    pending = [];
    if (batch.length === 0) return;
    if (batch.length === 1) return void runOne(batch[0]!);
    runBatch(batch.map((call) => call.input)).then(
      (outputs) => batch.forEach((call, index) => call.resolve(outputs[index] as O)),
      () => batch.forEach(runOne),
    );
  };

  return (input) =>
    new Promise<O>((resolve, reject) => {
      pending.push({ input, resolve, reject });
      if (pending.length >= maxBatchSize) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
}
