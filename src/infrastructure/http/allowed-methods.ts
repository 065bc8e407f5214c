import type { FastifyInstance } from 'fastify';
import FindMyWay, { type HTTPMethod } from 'find-my-way';

/**
 * The methods a request's path is served with; empty when no route (other than a catch-all) serves the path. For
 * `*`, every method the server serves.
 */
export type AllowedMethods = (url: string) => readonly string[];

const CATCH_ALL = new Set(['*', '/*']);

/**
 * How the server's router matches paths, and so the mirror below: as ASP.NET Core's routing (the original's) does,
 * in any letter case (`/API/Students` is `/api/students`; parameters keep theirs), and a trailing slash changes
 * nothing (`/api/students/` is the collection, not a student with an empty id).
 */
export const ROUTER_OPTIONS = { caseSensitive: false, ignoreTrailingSlash: true } as const;

/**
 * Mirrors every route the app registers from now on into a router of its own, so a request Fastify answers 404
 * can be told apart: a path no route serves (404) from a path served with other methods (405 with `Allow`, which
 * RFC 9110 §15.5.6 requires). Fastify routes by method first and has no such lookup. Only 404s consult it.
 */
export function trackAllowedMethods(app: FastifyInstance): AllowedMethods {
  const routes = FindMyWay(ROUTER_OPTIONS);
  const methods = new Set<HTTPMethod>();
  // A catch-all (the CORS preflight's OPTIONS *) serves its method everywhere, but does not make a path exist.
  const catchAll = new Set<HTTPMethod>();
  app.addHook('onRoute', ({ method, url }) => {
    for (const one of [method].flat() as HTTPMethod[]) {
      if (CATCH_ALL.has(url)) {
        catchAll.add(one);
        continue;
      }
      methods.add(one);
      if (!routes.hasRoute(one, url)) routes.on(one, url, () => undefined);
    }
  });
  return (url) => {
    // `OPTIONS *` asks about the server in general (RFC 9110 §9.3.7): every method some route takes.
    if (url === '*') return [...new Set([...methods, ...catchAll])].sort();
    const served = [...methods].filter((method) => routes.find(method, url) !== null);
    if (served.length === 0) return served;
    return [...new Set([...served, ...catchAll])].sort();
  };
}
