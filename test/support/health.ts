// `/health`'s body as the original's writer gives it (`checks` an array, in the order the checks are registered), and
// a way to find one check in it by name.

/** One check in `/health`'s `checks`. `Data`: what a test reads of its `data`. */
export interface HealthEntry<Data = Record<string, unknown>> {
  readonly name: string;
  readonly status: string;
  readonly description?: string;
  readonly exception: string | null;
  readonly duration: string;
  readonly data: Data;
}

/** `/health`'s body. */
export interface HealthBody {
  readonly status: string;
  readonly totalDuration: string;
  readonly checks: readonly HealthEntry[];
}

/** The check named `name` in a `/health` body (or a `runHealthChecks` report), or undefined when it has none. */
export function checkNamed<Data = Record<string, unknown>>(
  health: { readonly checks: readonly { readonly name: string }[] },
  name: string,
): HealthEntry<Data> | undefined {
  return health.checks.find((check) => check.name === name) as HealthEntry<Data> | undefined;
}
