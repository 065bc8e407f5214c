import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { NotificationEventTypes } from '../../contracts/students.ts';
import type { HttpServer } from '../../infrastructure/http/http-server.ts';

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

const pages = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  // The original's landing page address (ASP.NET's UseStaticFiles, without UseDefaultFiles, served it only there).
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.css': ['app.css', 'text/css; charset=utf-8'],
  '/test-page.js': ['test-page.js', 'text/javascript; charset=utf-8'],
} as const;

// Both test pages are one template: the same layout and script, a different transport.
const testPages = {
  '/sse-test.html': { title: 'Server-Sent Events test', transport: 'sse', scripts: '' },
  '/signalr-test.html': {
    title: 'SignalR test',
    transport: 'signalr',
    scripts: '    <script src="/lib/signalr.min.js"></script>\n',
  },
} as const;

/**
 * The landing and test pages, and the SignalR browser client served from node_modules: the pages work offline.
 * `apiPort` tells the pages where the webapi listens (same host); `?api=` on a page overrides it.
 */
export function registerPageRoutes(app: HttpServer, options: { readonly apiPort: number }): void {
  const signalrBundle = createRequire(import.meta.url).resolve(
    '@microsoft/signalr/dist/browser/signalr.min.js',
  );
  const hidden = { schema: { hide: true } };
  for (const [path, [file, type]] of Object.entries(pages)) {
    app.get(path, hidden, async (_request, reply) =>
      reply
        .type(type)
        .header('cache-control', 'no-cache')
        .send(await readFile(`${PUBLIC_DIR}${file}`)),
    );
  }
  for (const [path, values] of Object.entries(testPages)) {
    app.get(path, hidden, async (_request, reply) => {
      const template = await readFile(`${PUBLIC_DIR}test-page.html`, 'utf8');
      const html = template.replace(/\{\{(\w+)\}\}/g, (_match, name: keyof typeof values) => values[name]);
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(html);
    });
  }
  app.get('/lib/signalr.min.js', hidden, async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').send(await readFile(signalrBundle)),
  );
  app.get('/config.js', hidden, async (_request, reply) =>
    reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(
        `window.TBE_CONFIG = ${JSON.stringify({
          apiPort: options.apiPort,
          notificationTypes: Object.values(NotificationEventTypes),
        })};\n`,
      ),
  );
}
