/** A rule broken by one field: `field` names it as the client sent it, `reason` says what is wrong. */
export interface FieldIssue {
  readonly field: string;
  readonly reason: string;
}

/** Domain errors carry stable codes; mapping them to a transport (HTTP status, AMQP outcome) is the edge's job. */
export type DomainError =
  | { readonly code: 'STUDENT.INVALID'; readonly message: string; readonly issues: readonly FieldIssue[] }
  | { readonly code: 'STUDENT.NOT_FOUND'; readonly message: string }
  | {
      readonly code: 'STUDENT.VERSION_CONFLICT';
      readonly message: string;
      readonly currentVersion: number;
    };
