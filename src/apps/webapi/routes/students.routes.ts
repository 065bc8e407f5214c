import type { FastifyReply, FastifyRequest } from 'fastify';
import type { createStudent } from '../../../application/students/create-student.ts';
import type { deleteStudent } from '../../../application/students/delete-student.ts';
import type { getStudent } from '../../../application/students/get-student.ts';
import type { listStudents } from '../../../application/students/list-students.ts';
import { toStudentDto } from '../../../application/students/student-dto.ts';
import type { updateStudent } from '../../../application/students/update-student.ts';
import type { StudentWriteResult } from '../../../application/students/write-once.ts';
import type { VersionCondition } from '../../../application/students/load-for-write.ts';
import { Routes } from '../../../contracts/routes.ts';
import type { DomainError } from '../../../domain/errors.ts';
import type { StudentSnapshot } from '../../../domain/student.ts';
import type { HttpServer } from '../../../infrastructure/http/http-server.ts';
import { domainProblem, invalidRequest, sendProblem } from '../../../infrastructure/http/problem-details.ts';
import { bypassesCache } from '../plugins/dedup.plugin.ts';
import { markReplayed } from '../plugins/idempotency.plugin.ts';
import {
  etagOf,
  holdForUntagged,
  malformedPrecondition,
  preconditionFailed,
  readPreconditions,
  versionsNamed,
} from './etag.ts';
import { studentOpenApi } from './student-openapi.ts';
import {
  decodeCursor,
  encodeCursor,
  ListQuery,
  NoQuery,
  StudentIdParams,
  StudentInput,
} from './student-schemas.ts';

export interface StudentUseCases {
  readonly create: ReturnType<typeof createStudent>;
  readonly update: ReturnType<typeof updateStudent>;
  readonly remove: ReturnType<typeof deleteStudent>;
  readonly get: ReturnType<typeof getStudent>;
  readonly list: ReturnType<typeof listStudents>;
}

export interface StudentRouteOptions {
  /** Replay windows of request deduplication (the original's [DeduplicateRequest(30)] and (5)); 0 = off. */
  readonly dedup: { readonly getWindowSeconds: number; readonly putWindowSeconds: number };
  /** How long a response is kept for its Idempotency-Key (the document states it). */
  readonly idempotencyTtlSeconds: number;
}

/** Who made a change (createdBy, lastModifiedBy, the notifications' userId): the token's subject when auth is on. */
const actorOf = (request: FastifyRequest) => request.caller?.subject ?? 'anonymous';

/** Deduplicated responses are grouped by student, so a write to one drops them (see BentoStudentCache). */
// Read before validation (a replay needs none), so in the case the params schema stores ids in.
const byStudent = (request: FastifyRequest) => (request.params as { id: string }).id.toLowerCase();
/**
 * A PUT's stored answer: dropped by the webapi's own writes to the student, not by the worker's, which follows every
 * PUT within milliseconds. Replayed after another PUT or a DELETE, it would claim a state the student no longer has
 * (PUT A, PUT B, PUT A must leave A); after the worker's `updates += 1`, it is the answer a retry should get.
 */
const byStudentApiWrites = (request: FastifyRequest) => `${byStudent(request)}:api-writes`;

/** Registers the student routes under the canonical plural path and the original's singular alias. */
export function registerStudentRoutes(
  app: HttpServer,
  useCases: StudentUseCases,
  options: StudentRouteOptions,
): void {
  const docs = studentOpenApi(options);
  for (const base of [Routes.students, Routes.studentsAlias]) {
    registerUnder(app, base, useCases, options, docs, base !== Routes.students);
  }
}

function sendStudent(reply: FastifyReply, student: StudentSnapshot, status = 200) {
  return reply.code(status).header('etag', etagOf(student.version)).send(toStudentDto(student));
}

/** A write's outcome; a replay of an earlier write under the same Idempotency-Key says so. */
function written(reply: FastifyReply, result: StudentWriteResult): StudentWriteResult {
  if (result.replayed) markReplayed(reply);
  return result;
}

function sendError(reply: FastifyReply, error: DomainError) {
  if (error.code === 'STUDENT.VERSION_CONFLICT') void reply.header('etag', etagOf(error.currentVersion));
  return sendProblem(reply, domainProblem(error, reply.request.url));
}

/** The write's If-Match and If-None-Match; `null` when one was malformed (the reply is already sent). */
function preconditionOf(request: FastifyRequest, reply: FastifyReply): VersionCondition | null {
  const read = readPreconditions(request.headers);
  if (!('malformed' in read)) return versionsNamed(read);
  void sendProblem(reply, malformedPrecondition(request.url, read.malformed));
  return null;
}

function registerUnder(
  typed: HttpServer,
  base: string,
  useCases: StudentUseCases,
  { dedup }: StudentRouteOptions,
  docs: ReturnType<typeof studentOpenApi>,
  alias: boolean,
): void {
  const tags = ['Students'];
  // An alias shares the canonical routes' Idempotency-Keys: a retry may take either path.
  const keyed = (suffix: string) => (alias ? { aliasOf: `${Routes.students}${suffix}` } : true);
  // What generated clients name their methods after; the aliases are not in the document.
  const named = (operationId: string) => (alias ? {} : { operationId });

  typed.get(
    base,
    {
      schema: {
        hide: alias,
        ...named('listStudents'),
        tags,
        summary: 'List students, oldest first, one keyset page at a time',
        querystring: ListQuery,
        ...docs.list,
      },
    },
    async (request) => {
      const afterId = request.query.cursor ? decodeCursor(request.query.cursor) : undefined;
      const page = await useCases.list({ limit: request.query.limit, ...(afterId ? { afterId } : {}) });
      return {
        items: page.items.map(toStudentDto),
        nextCursor: page.lastId ? encodeCursor(page.lastId) : null,
      };
    },
  );

  typed.get(
    `${base}/:id`,
    {
      config: { dedup: { windowSeconds: dedup.getWindowSeconds, group: byStudent } },
      schema: {
        hide: alias,
        ...named('getStudent'),
        tags,
        summary: 'Get one student; Cache-Control: no-cache reads the database',
        params: StudentIdParams,
        querystring: NoQuery,
        ...docs.get,
      },
    },
    async (request, reply) => {
      const result = await useCases.get(request.params.id, { bypassCache: bypassesCache(request) });
      if (!result.ok) return sendError(reply, result.error);
      request.shownStateAt = result.value.at;
      // Already JSON: Fastify sends a string as is, without serializing again (the type provider expects objects).
      return reply
        .header('etag', etagOf(result.value.version))
        .type('application/json; charset=utf-8')
        .send(result.value.json as never);
    },
  );

  typed.post(
    base,
    {
      config: { idempotency: keyed('') },
      schema: {
        hide: alias,
        ...named('createStudent'),
        tags,
        summary: 'Create a student; fields left out are generated. Honors Idempotency-Key',
        querystring: NoQuery,
        body: StudentInput.nullish(),
        ...docs.create,
      },
    },
    async (request, reply) => {
      // The collection exists and has no entity tag: If-Match other than `*`, or If-None-Match `*`, cannot hold.
      const read = readPreconditions(request.headers);
      if ('malformed' in read) return sendProblem(reply, malformedPrecondition(request.url, read.malformed));
      if (!holdForUntagged(read))
        return sendProblem(
          reply,
          preconditionFailed(
            request.url,
            'The collection has no ETag: If-Match can only be "*", If-None-Match not "*".',
          ),
        );
      const result = written(
        reply,
        await useCases.create({
          details: request.body ?? {},
          actor: actorOf(request),
          idempotency: request.keyedWrite,
        }),
      );
      if (!result.ok) return sendError(reply, result.error);
      void reply.header('location', `${Routes.students}/${result.value.id}`);
      return sendStudent(reply, result.value, 201);
    },
  );

  typed.put(
    `${base}/:id`,
    {
      config: {
        idempotency: keyed('/:id'),
        dedup: {
          windowSeconds: dedup.putWindowSeconds,
          group: byStudentApiWrites,
          invalidates: byStudentApiWrites,
        },
      },
      schema: {
        hide: alias,
        ...named('replaceStudent'),
        tags,
        summary:
          'Replace a student: fields left out are generated anew, not kept (send every field). Honors Idempotency-Key',
        params: StudentIdParams,
        querystring: NoQuery,
        body: StudentInput.nullish(),
        ...docs.update,
      },
    },
    async (request, reply) => {
      const precondition = preconditionOf(request, reply);
      if (precondition === null) return reply;
      const result = written(
        reply,
        await useCases.update({
          id: request.params.id,
          details: request.body ?? {},
          actor: actorOf(request),
          precondition,
          idempotency: request.keyedWrite,
        }),
      );
      return result.ok ? sendStudent(reply, result.value) : sendError(reply, result.error);
    },
  );

  typed.delete(
    `${base}/:id`,
    {
      config: { idempotency: keyed('/:id'), dedup: { windowSeconds: 0, invalidates: byStudentApiWrites } },
      schema: {
        hide: alias,
        ...named('deleteStudent'),
        tags,
        summary: 'Delete a student. Honors Idempotency-Key',
        params: StudentIdParams,
        querystring: NoQuery,
        ...docs.remove,
      },
    },
    async (request, reply) => {
      // What a DELETE carries means nothing (RFC 9110 §9.3.5): options in it (`{"dryRun":true}`) are refused, as an
      // unknown query parameter is, not ignored while the student is deleted.
      if (request.body !== undefined)
        return sendProblem(
          reply,
          invalidRequest(request.url, 'A DELETE takes no body.', [
            { field: 'body', reason: 'must be absent: a DELETE takes none' },
          ]),
        );
      const precondition = preconditionOf(request, reply);
      if (precondition === null) return reply;
      const result = written(
        reply,
        await useCases.remove({
          id: request.params.id,
          actor: actorOf(request),
          precondition,
          idempotency: request.keyedWrite,
        }),
      );
      return result.ok ? reply.code(204).send(null) : sendError(reply, result.error);
    },
  );
}
