import pino from 'pino';

export type Logger = pino.Logger;

export interface LoggerOptions {
  level: string;
  pretty: boolean;
  name?: string;
}

/** JSON lines to stdout (pretty in a terminal); one logger per process, children per component. */
export function createLogger(options: LoggerOptions): Logger {
  return pino({
    level: options.level,
    ...(options.name ? { name: options.name } : {}),
    ...(options.pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
          },
        }
      : {}),
  });
}
