import { context, trace, type SpanContext } from '@opentelemetry/api';
import pino from 'pino';
import pretty from 'pino-pretty';
import { createStream as createSeqStream, type PinoSeqStream } from 'pino-seq';
import { LogThrottle } from './log-throttle.ts';
import { valueWithoutUrlPassword, withoutUrlPassword } from './url-password.ts';
import { settledWithin } from '../runtime/settled-within.ts';

export type Logger = pino.Logger;

export interface LoggerOptions {
  level: string;
  pretty: boolean;
  name?: string;
  /** Also ship every line to Seq; an unreachable Seq never stops the process (stdout keeps everything). */
  seqUrl?: string;
  seqApiKey?: string;
}

const PRETTY_OPTIONS = { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' };
const SEQ_FAILURE_REPORT_INTERVAL_MS = 60_000;
const SEQ_FLUSH_TIMEOUT_MS = 2_000;

const seqStreams = new WeakMap<Logger, PinoSeqStream>();

/**
 * Redis commands whose arguments hold a password. ioredis hangs the command a reply refused on its error (`command:
 * { name, args }`), AUTH's too: a refused login (a wrong password, or the right one of a user that is disabled or not
 * yet loaded) would put the password in the log line.
 */
const COMMANDS_WITH_PASSWORD = new Set(['auth', 'hello']);

/** pino's serializer of an error, without the arguments of a Redis command that carries a password. */
function errorWithoutPassword(error: Error): unknown {
  const serialized: unknown = pino.stdSerializers.err(error);
  maskPasswordCommands(serialized, new Set());
  return serialized;
}

/** In a serialized error (a copy: the error itself keeps its command), its causes and nested errors too. */
function maskPasswordCommands(value: unknown, seen: Set<object>): void {
  if (typeof value !== 'object' || value === null || seen.has(value)) return;
  seen.add(value);
  const { command } = value as { command?: { name?: unknown } };
  if (typeof command?.name === 'string' && COMMANDS_WITH_PASSWORD.has(command.name.toLowerCase()))
    (value as { command: unknown }).command = { name: command.name, args: '***' };
  for (const nested of Object.values(value)) maskPasswordCommands(nested, seen);
}

/** The serializers of every role's logger (its children inherit them). */
export const logSerializers = { err: errorWithoutPassword };

/**
 * JSON lines to stdout (pretty in a terminal), plus Seq when `seqUrl` is set; one logger per process, children
 * per component. A line written inside a traced span carries its `trace_id` and `span_id` (Seq links the two).
 */
export function createLogger(options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    ...(options.name ? { name: options.name } : {}),
    mixin: traceIds,
    serializers: logSerializers,
  };
  if (!options.seqUrl)
    return pino({
      ...base,
      ...(options.pretty ? { transport: { target: 'pino-pretty', options: PRETTY_OPTIONS } } : {}),
    });
  const seq = createSeqStream({
    serverUrl: options.seqUrl,
    ...(options.seqApiKey ? { apiKey: options.seqApiKey } : {}),
    onError: reportSeqFailures(options.seqUrl),
  });
  // The logger's own level filters; each stream takes whatever passes it.
  const logger = pino(
    base,
    pino.multistream([
      { level: 'trace', stream: options.pretty ? pretty(PRETTY_OPTIONS) : pino.destination(1) },
      { level: 'trace', stream: seq },
    ]),
  );
  seqStreams.set(logger, seq);
  return logger;
}

/** Ships what is still buffered for Seq (bounded: a Seq that does not answer must not hold up the exit). */
export async function flushLogger(logger: Logger): Promise<void> {
  const seq = seqStreams.get(logger);
  if (!seq) return;
  await settledWithin(seq.flush(), SEQ_FLUSH_TIMEOUT_MS);
}

const REQUEST_SPAN = Symbol('request span');
type WithRequestSpan = { [REQUEST_SPAN]?: SpanContext };

/**
 * Ties a request's own child logger to its server span: its lines carry that span's ids even where the span is not the
 * active context (hooks before and after the handler, the error handler), as long as no other span is active. A
 * property of the child, not a new child: one per request is made already, and its children inherit it.
 */
export function bindRequestSpan(requestLogger: object, spanContext: SpanContext): void {
  (requestLogger as WithRequestSpan)[REQUEST_SPAN] = spanContext;
}

/**
 * The `trace_id` and `span_id` of a line: the active span's, else (for a request's logger) its server span's.
 * pino merges each line's fields into the returned object, so it must be a new one every time.
 */
export function traceIds(_fields?: object, _level?: number, logger?: object): object {
  const spanContext =
    trace.getSpan(context.active())?.spanContext() ?? (logger as WithRequestSpan | undefined)?.[REQUEST_SPAN];
  if (!spanContext || !trace.isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}

/** To stderr, not through the logger (that would feed the failing stream), and at most once a minute. */
function reportSeqFailures(serverUrl: string): (error: unknown) => void {
  const failures = new LogThrottle(SEQ_FAILURE_REPORT_INTERVAL_MS);
  return (error) =>
    failures.run((unsaid) => {
      const reason = withoutUrlPassword(
        error instanceof Error ? `${error.message}${causeOf(error)}` : String(error),
      );
      process.stderr.write(
        `Seq at ${valueWithoutUrlPassword(serverUrl)} is not taking logs (${reason}` +
          `${unsaid > 0 ? `, and ${unsaid} more failures since the last report` : ''}); they still go to stdout\n`,
      );
    });
}

function causeOf(error: Error): string {
  return error.cause instanceof Error ? `: ${error.cause.message}` : '';
}
