// A throw-away RabbitMQ virtual host per test run, so runs never see each other's queues. Uses the management
// HTTP API when it answers, otherwise rabbitmqctl on this machine.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { AMQP_URL, uniqueName } from './services.ts';
import { TcpProxy } from './tcp-proxy.ts';

const run = promisify(execFile);

export interface TestVhost {
  readonly name: string;
  /** AMQP URL into the vhost. */
  readonly url: string;
  /** Closes every client connection to this vhost from the server side (and only to this vhost). */
  dropConnections(): Promise<void>;
  delete(): Promise<void>;
}

export async function createTestVhost(prefix = 'message_bus_test'): Promise<TestVhost> {
  const name = uniqueName(prefix);
  const amqp = new URL(AMQP_URL);
  const admin = (await managementApi(amqp)) ?? rabbitmqctl(decodeURIComponent(amqp.username || 'guest'));
  await Promise.all([admin.addVhost(name), sweepStale(admin, prefix)]);
  const url = new URL(AMQP_URL);
  url.pathname = `/${encodeURIComponent(name)}`;
  return {
    name,
    url: url.toString(),
    dropConnections: () => admin.dropConnections(name),
    delete: () => admin.deleteVhost(name),
  };
}

/** A throw-away vhost reached through a proxy, so a test can take the broker away (`proxy.pause()`) and back. */
export async function createProxiedVhost(
  prefix: string,
): Promise<{ vhost: TestVhost; proxy: TcpProxy; url: string; delete(): Promise<void> }> {
  const vhost = await createTestVhost(prefix);
  const { proxy, url } = await TcpProxy.inFrontOf(vhost.url, 5672);
  return {
    vhost,
    proxy,
    url,
    async delete() {
      await proxy.stop();
      await vhost.delete();
    },
  };
}

/** Deletes vhosts left behind by killed runs (name = prefix_<base36 ms>_<random>) older than an hour. */
async function sweepStale(admin: Admin, prefix: string): Promise<void> {
  const cutoff = Date.now() - 3_600_000;
  try {
    const stale = (await admin.listVhosts()).filter((name) => {
      const stamp = name.startsWith(`${prefix}_`) ? name.slice(prefix.length + 1).split('_')[0] : undefined;
      return stamp !== undefined && parseInt(stamp, 36) < cutoff;
    });
    await Promise.all(stale.map((name) => admin.deleteVhost(name)));
  } catch {
    // Best effort: a leftover vhost costs nothing but clutter.
  }
}

interface Admin {
  listVhosts(): Promise<string[]>;
  addVhost(name: string): Promise<void>;
  dropConnections(name: string): Promise<void>;
  deleteVhost(name: string): Promise<void>;
}

async function managementApi(amqp: URL): Promise<Admin | undefined> {
  const base = `http://${amqp.hostname}:15672/api`;
  const user = decodeURIComponent(amqp.username || 'guest');
  const auth = `Basic ${Buffer.from(`${user}:${decodeURIComponent(amqp.password || 'guest')}`).toString('base64')}`;
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5_000),
    });
    if (!response.ok && response.status !== 404)
      throw new Error(`${method} ${path}: HTTP ${response.status}`);
    return response;
  };
  try {
    await call('GET', '/overview');
  } catch {
    return undefined;
  }
  const vhost = (name: string) => encodeURIComponent(name);
  return {
    async listVhosts() {
      const response = await call('GET', '/vhosts');
      return ((await response.json()) as { name: string }[]).map((v) => v.name);
    },
    async addVhost(name) {
      await call('PUT', `/vhosts/${vhost(name)}`);
      await call('PUT', `/permissions/${vhost(name)}/${encodeURIComponent(user)}`, {
        configure: '.*',
        write: '.*',
        read: '.*',
      });
    },
    async dropConnections(name) {
      const response = await call('GET', `/vhosts/${vhost(name)}/connections`);
      const connections = (await response.json()) as { name: string }[];
      await Promise.all(connections.map((c) => call('DELETE', `/connections/${encodeURIComponent(c.name)}`)));
    },
    async deleteVhost(name) {
      await call('DELETE', `/vhosts/${vhost(name)}`);
    },
  };
}

function rabbitmqctl(user: string): Admin {
  const ctl = (...args: string[]) => run('rabbitmqctl', ['--quiet', ...args], { timeout: 30_000 });
  return {
    async listVhosts() {
      const { stdout } = await ctl('list_vhosts', '--no-table-headers', 'name');
      return stdout
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean);
    },
    async addVhost(name) {
      await ctl('add_vhost', name);
      await ctl('set_permissions', '-p', name, user, '.*', '.*', '.*');
    },
    async dropConnections(name) {
      // -p scopes it to this vhost: other suites' connections on the shared broker are left alone.
      await ctl('close_all_connections', '-p', name, 'message bus contract test: connection loss');
    },
    async deleteVhost(name) {
      await ctl('delete_vhost', name);
    },
  };
}
