import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { Routes } from '../../contracts/routes.ts';
import type { HttpServer } from './http-server.ts';

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
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: Routes.docs });
  app.get(Routes.openApi, { schema: { hide: true } }, () => app.swagger());
}
