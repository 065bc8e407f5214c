import { createWebApi, type WebApiStopped } from '../../src/apps/webapi/main.ts';
import { parseConfig } from '../../src/config.ts';
import type { Logger } from '../../src/infrastructure/logging/logger.ts';
import type { Database } from '../../src/infrastructure/persistence/database.ts';
import { silentLogger } from './logger.ts';

export interface RunningWebApi {
  readonly url: string;
  stop(): Promise<WebApiStopped>;
}

/** Boots the real webapi on a free port over `database`, the way its composition root does; `env` adds settings. */
export async function startWebApi(
  database: Database,
  env: Record<string, string> = {},
  logger: Logger = silentLogger,
): Promise<RunningWebApi> {
  const config = parseConfig({ API_PORT: '0', LOG_LEVEL: 'silent', ...env });
  const webApi = await createWebApi({ config, logger, database });
  const url = await webApi.start();
  return { url, stop: () => webApi.stop() };
}

export async function json(response: Response): Promise<Record<string, unknown>> {
  return (await response.json()) as Record<string, unknown>;
}
