import { createServer } from 'node:net';

/**
 * A free port below Linux's ephemeral range (32768 and up). A server restarted on its port must find it still free:
 * a process listening on port 0 meanwhile (a role restarted by the test) could otherwise be given it.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }
}
