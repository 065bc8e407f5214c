import type { DomainError } from '../../domain/errors.ts';
import type { Result } from '../../domain/result.ts';
import type { StudentSnapshot } from '../../domain/student.ts';
import { IdempotencyKeyReusedError } from '../errors.ts';
import type { KeyedRequest } from '../ports/idempotency-keys.ts';
import type { TransactionScope, UnitOfWork } from '../ports/student-repository.ts';

/** A write's result; `replayed` when it is the outcome of an earlier write under the same Idempotency-Key. */
export type StudentWriteResult = Result<StudentSnapshot, DomainError> & { readonly replayed?: true };

/**
 * Runs `write` in one transaction, and under a key at most once: the key is claimed and its outcome stored in the
 * same transaction as the write. A retry of a committed write gets its outcome back, even when the first attempt's
 * process died before its response was recorded; a refused write (a domain error) leaves the key unused.
 */
export function writeOnce(
  unitOfWork: UnitOfWork,
  request: KeyedRequest | undefined,
  write: (scope: TransactionScope) => Promise<Result<StudentSnapshot, DomainError>>,
): Promise<StudentWriteResult> {
  return unitOfWork.transaction(async (scope) => {
    if (!request) return write(scope);
    const used = await scope.idempotencyKeys.claim(request);
    if (used) {
      if (used.fingerprint !== request.fingerprint) throw new IdempotencyKeyReusedError();
      return { ok: true, value: used.outcome, replayed: true };
    }
    const result = await write(scope);
    if (result.ok) await scope.idempotencyKeys.complete(request, result.value);
    else await scope.idempotencyKeys.release(request);
    return result;
  });
}
