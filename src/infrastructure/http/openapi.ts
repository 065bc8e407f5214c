import swagger, { type SwaggerTransform } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { RouteOptions } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Routes } from '../../contracts/routes.ts';
import type { HttpServer } from './http-server.ts';
import { PROBLEM_JSON } from './problem-details.ts';

const problemMembers = {
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string().optional(),
  instance: z.string().optional(),
  code: z.string(),
  errors: z.array(z.object({ field: z.string(), reason: z.string() })).optional(),
};

/**
 * The wire shape of `ProblemDetails` (problem-details.ts). Extension members a route sends are declared where it
 * sends them (`problemWith`), so a generated client types them; any other passes through.
 */
const ProblemDetailsSchema = z.object(problemMembers).loose().meta({ id: 'ProblemDetails' });

/** A problem with extension members of its own (RFC 9457 §3.2), named `id` in the document. */
export function problemWith(id: string, members: z.ZodRawShape): z.ZodType {
  return z
    .object({ ...problemMembers, ...members })
    .loose()
    .meta({ id });
}

/** A response header as the document shows it: a JSON Schema and what it means. */
export interface ResponseHeader {
  readonly type: 'string' | 'integer';
  readonly description: string;
  readonly enum?: readonly string[];
}
export type ResponseHeaders = Readonly<Record<string, ResponseHeader>>;

export const RETRY_AFTER: ResponseHeaders = {
  'Retry-After': { type: 'integer', description: 'Seconds to wait before sending the request again' },
};

/** A response with a body of `schema` in `mediaType`, and the headers it carries. */
function withBody<Schema extends z.ZodType, MediaType extends string>(
  mediaType: MediaType,
  schema: Schema,
  description: string,
  headers?: ResponseHeaders,
) {
  return {
    description,
    ...(headers ? { headers } : {}),
    content: { [mediaType]: { schema } } as Record<MediaType, { schema: Schema }>,
  };
}

export function jsonResponse<Schema extends z.ZodType>(
  schema: Schema,
  description: string,
  headers?: ResponseHeaders,
) {
  return withBody('application/json', schema, description, headers);
}

export function problemResponse(
  description: string,
  headers?: ResponseHeaders,
  schema: z.ZodType = ProblemDetailsSchema,
) {
  return withBody(PROBLEM_JSON, schema, description, headers);
}

/** A response without a body (204, 304). Its headers travel in the schema's metadata, which @fastify/swagger reads. */
export function emptyResponse(description: string, headers?: ResponseHeaders) {
  return z.null().meta({ description, ...(headers ? { headers } : {}) });
}

/** What any route can answer while its database or cache is down (DependencyUnavailableError) or it shuts down. */
export const serviceUnavailable = problemResponse(
  'A dependency (database, cache, key set) cannot serve the request now (down, refusing writes, or busy), or this instance is shutting down: try again',
  RETRY_AFTER,
  problemWith('UnavailableProblem', {
    dependency: z.string().optional().describe('What cannot serve it (`DEPENDENCY.UNAVAILABLE` only)'),
  }),
);

/**
 * For a plugin that answers on the routes of its scope (in an `onRoute` hook): adds its `responses` to a route's,
 * when the route lists them.
 */
export function addResponses(route: RouteOptions, responses: Readonly<Record<number, unknown>>): void {
  const listed = route.schema?.response;
  if (listed !== undefined) route.schema = { ...route.schema, response: { ...listed, ...responses } };
}

/**
 * For a plugin that sets `headers` on every response of the routes of its scope (in an `onRoute` hook): adds them to
 * each response a route lists so far, as new response objects (routes share them).
 */
export function addResponseHeaders(route: RouteOptions, headers: ResponseHeaders): void {
  const listed = route.schema?.response as Record<string, unknown> | undefined;
  if (listed === undefined) return;
  const response = Object.fromEntries(
    Object.entries(listed).map(([status, entry]) => [status, withHeaders(entry, headers)]),
  );
  route.schema = { ...route.schema, response };
}

/** A copy of `response` with `headers` too; an `emptyResponse` keeps them in its schema's metadata (`.meta` copies). */
function withHeaders(response: unknown, headers: ResponseHeaders): unknown {
  if (response instanceof z.ZodType) {
    const meta = response.meta() as { headers?: ResponseHeaders } | undefined;
    return response.meta({ ...meta, headers: { ...meta?.headers, ...headers } });
  }
  const entry = response as { headers?: ResponseHeaders };
  return { ...entry, headers: { ...entry.headers, ...headers } };
}

/** The zod transform keeps only the description and content of a response declared per media type: not its headers. */
const transform: SwaggerTransform = (document) => {
  const transformed = jsonSchemaTransform(document);
  const declared = document.schema?.response as Record<string, object> | undefined;
  const response = transformed.schema.response as Record<string, object> | undefined;
  if (declared === undefined || response === undefined) return transformed;
  for (const [status, entry] of Object.entries(declared))
    if ('content' in entry && 'headers' in entry && response[status])
      response[status] = { ...response[status], headers: entry.headers };
  return transformed;
};

type JsonSchema = { readonly type?: unknown; readonly anyOf?: unknown[]; readonly oneOf?: unknown[] };

function acceptsNull(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  const { type, anyOf, oneOf } = schema as JsonSchema;
  return (
    type === 'null' ||
    (Array.isArray(type) && type.includes('null')) ||
    [...(anyOf ?? []), ...(oneOf ?? [])].some(acceptsNull)
  );
}

/**
 * @fastify/swagger marks every declared body required. A body schema that takes null is `.nullish()` in zod: the
 * route takes no body at all too (a POST without one creates a generated student), so the document says so.
 */
const transformObject: typeof jsonSchemaTransformObject = (input) => {
  const document = jsonSchemaTransformObject(input) as {
    paths?: Record<string, Record<string, { requestBody?: { required?: boolean; content?: object } }>>;
    components?: { schemas?: Record<string, unknown> };
  };
  for (const operations of Object.values(document.paths ?? {}))
    for (const { requestBody } of Object.values(operations)) {
      const media = Object.values(requestBody?.content ?? {}) as { schema?: unknown }[];
      if (requestBody && media.length > 0 && media.every(({ schema }) => acceptsNull(schema)))
        requestBody.required = false;
    }
  dropUnusedSchemas(document);
  return document as ReturnType<typeof jsonSchemaTransformObject>;
};

const SCHEMA_REF = /"#\/components\/schemas\/([^"]+)"/g;

/**
 * The zod transform declares each registered schema twice, as output and as input (`StudentInput`): the response
 * schemas' input twins are used by no operation, and one named like a request body but shaped like a student
 * misleads readers of the docs and client generators. Only the schemas the operations reach are kept.
 */
function dropUnusedSchemas(document: { paths?: object; components?: { schemas?: Record<string, unknown> } }) {
  const schemas = document.components?.schemas;
  if (!schemas) return;
  const used = new Set<string>();
  const visit = (value: unknown) => {
    for (const [, name] of JSON.stringify(value ?? null).matchAll(SCHEMA_REF))
      if (!used.has(name!)) {
        used.add(name!);
        visit(schemas[name!]);
      }
  };
  visit(document.paths);
  for (const name of Object.keys(schemas)) if (!used.has(name)) delete schemas[name];
}

/**
 * OpenAPI 3 generated from the routes' zod schemas, at /openapi.json, with interactive docs at /docs. With
 * `bearerAuth` the document declares the JWT bearer scheme, so the docs' "Authorize" button takes a token.
 */
export async function registerOpenApi(
  app: HttpServer,
  info: { title: string; version: string; description: string },
  { bearerAuth }: { bearerAuth: boolean },
) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info,
      ...(bearerAuth
        ? {
            components: {
              securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
            },
            security: [{ bearer: [] }],
          }
        : {}),
    },
    transform,
    transformObject,
  });
  await app.register(swaggerUi, { routePrefix: Routes.docs });
  app.get(Routes.openApi, { schema: { hide: true } }, () => app.swagger());
}

/**
 * For a plugin that answers with a status a route lists already (a 400 of its own): adds `headers` to that response
 * and the sentence `also` to its description.
 */
export function amendResponse(
  route: RouteOptions,
  status: number,
  also: string,
  headers: ResponseHeaders,
): void {
  const listed = route.schema?.response as Record<number, { description: string }> | undefined;
  const response = listed?.[status];
  if (response === undefined) return;
  addResponses(route, {
    [status]: withHeaders({ ...response, description: `${response.description}. ${also}` }, headers),
  });
}
