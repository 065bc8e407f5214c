// The one place that reads the environment: parsed and validated once, at start-up, by each composition root.
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { MAX_WORKER_PARTITIONS } from './contracts/messaging.ts';
import { valueWithoutUrlPassword } from './infrastructure/logging/url-password.ts';
import { SENT_OUTBOX_RETENTION_MS } from './infrastructure/outbox/sent-retention.ts';
import { DEFAULT_RESILIENCE, type ResilienceOptions } from './infrastructure/resilience/resilience-policy.ts';

/**
 * A whole number from `min` to `max`, written in decimal digits (blanks around them aside): Number() alone
 * (z.coerce) would also take `0x1388`, `1e3` and `5.0`, which nobody means for a port or a count. `message` says
 * what is accepted, whatever the fault.
 */
const wholeNumber = (message: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess(
    (value) => (typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value),
    z.number({ error: message }).int(message).min(min, message).max(max, message).default(fallback),
  );

const port = (fallback: number) =>
  wholeNumber('must be an integer from 0 to 65535 (0 = any free port)', fallback, 0, 65_535);

/** The entries of a comma-separated list (origins, proxies), without blanks or empty entries. */
const entriesOf = (value: string): string[] =>
  value
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);

/** The ranges a proxy-trust list may name besides addresses (those @fastify/proxy-addr knows). */
const NAMED_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** An address, a CIDR range (`10.0.0.0/8`, `fd00::/8`) or a named range. */
function isProxyRange(entry: string): boolean {
  if (NAMED_RANGES.has(entry)) return true;
  const [address = '', bits, ...rest] = entry.split('/');
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return false;
  // Not /0: trusting every address would let any client name its own (and Fastify's proxy-addr refuses it).
  return (
    bits === undefined ||
    (/^\d{1,3}$/.test(bits) && Number(bits) >= 1 && Number(bits) <= (version === 4 ? 32 : 128))
  );
}

const LOOPBACK_HOSTS = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])$/;

// Schemes whose URL names a server: without a host, the client would quietly connect to localhost.
const SERVER_SCHEMES = new Set(['amqp:', 'amqps:', 'redis:', 'rediss:']);

const urlWithScheme = (schemes: readonly string[], hint: string) =>
  z
    .string()
    // URL() drops blanks around a URL, the code that opens it does not: ` memory:` would pass here and then be handed
    // to the RabbitMQ client, `pglite://memory ` open a directory named `memory `.
    .refine((value) => value === value.trim(), { error: 'must not start or end with blanks', abort: true })
    .refine((value) => {
      if (value === 'memory:' && schemes.includes('memory:')) return true;
      const url = URL.parse(value);
      // `MEMORY:` or `memory:x` is memory: to URL(), but not to the code that picks the in-process adapter.
      if (url === null || url.protocol === 'memory:') return false;
      return schemes.includes(url.protocol) && !(SERVER_SCHEMES.has(url.protocol) && url.hostname === '');
    }, hint);

// fetch refuses a URL with a user or password in it ("Request cannot be constructed from a URL that includes
// credentials"): one read by fetch could never work, and would be logged, password and all, with each failure.
const withoutCredentials = (value: string) => {
  const url = URL.parse(value);
  return url === null || (url.username === '' && url.password === '');
};

/** The longest delay Node's timers take (about 24.8 days): a longer one fires after 1 ms, with only a warning. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Durations that end up in the database or Redis as a date or an expiry: up to 100 years, past which PostgreSQL's
 * intervals and timestamps (and Redis's expiries) overflow, and a request fails at run time instead of here.
 */
const MAX_STORED_SECONDS = 100 * 365 * 86_400;

const seconds = (fallback: number, min = 1, max = MAX_STORED_SECONDS) =>
  wholeNumber(`must be a whole number of seconds, at least ${min}, at most ${max}`, fallback, min, max);

/** Seconds that run a timer: at most what Node's timers hold. */
const timerSeconds = (fallback: number, min = 1) => seconds(fallback, min, Math.floor(MAX_TIMER_MS / 1_000));

const milliseconds = (fallback: number) =>
  wholeNumber(
    `must be a whole, positive number of milliseconds, at most ${MAX_TIMER_MS} (the longest timer Node keeps)`,
    fallback,
    1,
    MAX_TIMER_MS,
  );

const otlpProtocol = z.enum(['http/protobuf', 'http/json'], { error: 'must be http/protobuf or http/json' });

const ConfigSchema = z.object({
  DATABASE_URL: urlWithScheme(
    ['postgres:', 'postgresql:', 'pglite:'],
    'must be postgres://user@host:5432/db, pglite://DIR or pglite://memory',
  )
    // URL() takes `pglite:DIR`, `PGLITE://DIR` and `pglite://` too, but only `pglite://` and a directory (or
    // `memory`) open the embedded database: the others would be handed to the PostgreSQL driver.
    .refine(
      (value) => !/^pglite:/i.test(value) || /^pglite:\/\/./.test(value),
      'must be pglite://DIR or pglite://memory for the embedded database (lower case, two slashes, then the directory)',
    )
    .default('pglite://./.data/pg'),
  // The most connections one process's pool opens; the relay's leader session, the migration and (while the pool is
  // full) the health check have one of their own each.
  DATABASE_POOL_SIZE: wholeNumber('must be a whole number from 1 to 1000', 10, 1, 1_000),
  // A webapi write waiting on a row or table lock another session holds gives up after this long (0: waits up to the
  // statement timeout, 30 s), so a hot row ties up a few connections for seconds, not the pool for half a minute.
  // The worker waits: nobody waits on it, and an event given up on too soon would be dead-lettered.
  DATABASE_LOCK_TIMEOUT_MS: wholeNumber(
    'must be a whole number of milliseconds from 0 to 30000',
    5_000,
    0,
    30_000,
  ),
  AMQP_URL: urlWithScheme(
    ['memory:', 'amqp:', 'amqps:'],
    'must be memory: or amqp://user:pass@host:5672/vhost',
  ).default('memory:'),
  REDIS_URL: urlWithScheme(
    ['memory:', 'redis:', 'rediss:'],
    'must be memory: or redis://host:6379/db',
  ).default('memory:'),
  HOST: z.string().min(1, 'must be a bind address such as 127.0.0.1 or 0.0.0.0').default('127.0.0.1'),
  API_PORT: port(5000),
  NOTIFICATIONS_PORT: port(5001),
  WORKER_PORT: port(5002),
  WORKER_PREFETCH: wholeNumber('must be a whole number from 1 to 1000 (1 = strict FIFO)', 1, 1, 1000),
  WORKER_PARTITIONS: wholeNumber(
    `must be a whole number from 1 to ${MAX_WORKER_PARTITIONS} (1 = one queue)`,
    1,
    1,
    MAX_WORKER_PARTITIONS,
  ),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: 'must be one of fatal, error, warn, info, debug, trace, silent',
    })
    .default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty'], { error: 'must be json or pretty' }).optional(),
  SEQ_URL: urlWithScheme(['http:', 'https:'], 'must be the URL of a Seq server, e.g. http://seq:5341')
    .refine(withoutCredentials, 'must not carry a user or password (give Seq an API key in SEQ_API_KEY)')
    .optional(),
  SEQ_API_KEY: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: urlWithScheme(
    ['http:', 'https:'],
    'must be the base URL of an OTLP/HTTP receiver, e.g. http://collector:4318',
  ).optional(),
  // The signal-specific variables win over the general ones, as the OTLP exporter spec says.
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: urlWithScheme(
    ['http:', 'https:'],
    'must be the full URL traces are sent to, e.g. http://collector:4318/v1/traces',
  ).optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.default('http/protobuf'),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.optional(),
  AUTH_JWT_SECRET: z
    .string()
    .min(32, 'must be at least 32 characters (HS256 wants a 256-bit key)')
    .optional(),
  AUTH_JWKS_URL: z
    .string()
    .refine(
      (value) => /^https?:$/.test(URL.parse(value)?.protocol ?? ''),
      'must be an http(s) URL of a JSON Web Key Set',
    )
    // Whoever could change the keys on their way could sign any token (ASP.NET Core's RequireHttpsMetadata).
    .refine((value) => {
      const url = URL.parse(value);
      return url?.protocol !== 'http:' || LOOPBACK_HOSTS.test(url.hostname);
    }, 'must be https (plain http only on this machine: localhost, 127.x.x.x, [::1])')
    .refine(withoutCredentials, 'must not carry a user or password (a JSON Web Key Set is public)')
    .optional(),
  AUTH_ISSUER: z.string().optional(),
  AUTH_AUDIENCE: z.string().optional(),
  // Unset, X-Forwarded-* are ignored: a client reaching a role directly could name any address, and so get a new
  // write budget with every request.
  TRUST_PROXY: z
    .string()
    .refine(
      (value) => entriesOf(value).length > 0 && entriesOf(value).every(isProxyRange),
      'must list the addresses or CIDR ranges of the proxies in front (comma-separated), e.g. 10.0.0.0/8,127.0.0.1, or loopback, linklocal, uniquelocal',
    )
    .transform(entriesOf)
    .optional(),
  RATE_LIMIT_WRITES_PER_MINUTE: wholeNumber('must be a whole number, 0 or more (0 = no limit)', 10_000, 0),
  HTTP_MAX_HEADER_BYTES: wholeNumber(
    'must be a whole number of bytes from 1024 to 1048576',
    16_384,
    1024,
    1_048_576,
  ),
  CACHE_TTL_SECONDS: seconds(900),
  CACHE_KEY_PREFIX: z
    .string()
    .regex(/^[\w:.-]{1,64}$/, 'must be 1 to 64 letters, digits, or _ : . -')
    .default('student:'),
  DEDUP_GET_WINDOW_SECONDS: seconds(30, 0),
  DEDUP_PUT_WINDOW_SECONDS: seconds(5, 0),
  IDEMPOTENCY_TTL_SECONDS: seconds(86_400),
  IDEMPOTENCY_LEASE_SECONDS: timerSeconds(30),
  // What an embedded restart can send again (the in-process bus's queues die with the process); with RabbitMQ, sent
  // rows only help a diagnosis, and a day of them is gigabytes on a busy system.
  OUTBOX_SENT_RETENTION_SECONDS: seconds(SENT_OUTBOX_RETENTION_MS / 1_000, 60),
  // At least as long as the outbox keeps sent rows (checked below): an embedded restart resends those, and the inbox
  // must know them.
  INBOX_RETENTION_SECONDS: seconds(7 * 86_400, 3_600),
  RESILIENCE_DURATION_OF_BREAK_MS: milliseconds(DEFAULT_RESILIENCE.durationOfBreakMs),
  // Decimal digits only, as every other number: z.coerce (Number()) alone would also take `0x1`, `1e-1` and `Infinity`.
  RESILIENCE_FAILURE_RATIO: z.preprocess(
    (value) => (typeof value === 'string' && /^\s*(\d+\.?\d*|\.\d+)\s*$/.test(value) ? Number(value) : value),
    z
      .number({ error: 'must be a number above 0, at most 1' })
      .gt(0, 'must be a number above 0, at most 1')
      .max(1, 'must be a number above 0, at most 1')
      .default(DEFAULT_RESILIENCE.failureRatio),
  ),
  RESILIENCE_SAMPLING_DURATION_MS: milliseconds(DEFAULT_RESILIENCE.samplingDurationMs),
  RESILIENCE_MINIMUM_THROUGHPUT: wholeNumber(
    'must be a whole number from 1 to 10000',
    DEFAULT_RESILIENCE.minimumThroughput,
    1,
    10_000,
  ),
  RESILIENCE_MAX_RETRY_ATTEMPTS: wholeNumber(
    'must be a whole number from 0 to 20',
    DEFAULT_RESILIENCE.maxRetryAttempts,
    0,
    20,
  ),
  RESILIENCE_BASE_DELAY_MS: milliseconds(DEFAULT_RESILIENCE.baseDelayMs),
  RESILIENCE_MAX_DELAY_MS: milliseconds(DEFAULT_RESILIENCE.maxDelayMs),
  RESILIENCE_TIMEOUT_MS: milliseconds(DEFAULT_RESILIENCE.timeoutMs),
  SHUTDOWN_TIMEOUT_MS: milliseconds(10_000),
  REPLAY_LOG_MAX_ENTRIES: wholeNumber('must be a whole number from 100 to 10000000', 10_000, 100, 10_000_000),
  REPLAY_LOG_KEY_PREFIX: z
    .string()
    .regex(/^[\w:.-]{1,64}$/, 'must be 1 to 64 letters, digits, or _ : . -')
    .default('notifications:'),
  SSE_HEARTBEAT_SECONDS: timerSeconds(15),
  NOTIFICATIONS_MAX_CONNECTIONS: wholeNumber(
    'must be a whole number from 1 to 10000000',
    10_000,
    1,
    10_000_000,
  ),
  NOTIFICATIONS_MAX_CONNECTIONS_PER_USER: wholeNumber(
    'must be a whole number from 1 to 10000000',
    20,
    1,
    10_000_000,
  ),
  // An empty value is unset (the default, any origin), like every other: no origin at all has to be written, `none`.
  CORS_ORIGINS: z
    .string()
    .refine(
      (value) => value.trim() === 'none' || entriesOf(value).length > 0,
      'must list origins (comma-separated), * for any, or none',
    )
    // A browser sends its Origin as scheme://host[:port], never with a path or a trailing slash: an entry written
    // otherwise would match nothing, and the pages' calls would fail in the browser with no word from the server.
    .refine(
      (value) =>
        value.trim() === 'none' ||
        entriesOf(value).every((origin) => origin === '*' || URL.parse(origin)?.origin === origin),
      'must list origins as a browser sends them, such as http://localhost:5001 (scheme, host and port, no path or trailing slash), * for any, or none',
    )
    // `*` means any origin, without credentials: next to listed origins it would silently drop their credentials.
    .refine((value) => {
      const origins = entriesOf(value);
      return !origins.includes('*') || origins.length === 1;
    }, 'must be * alone, or a list of origins without *')
    .refine((value) => {
      const origins = entriesOf(value);
      return new Set(origins).size === origins.length;
    }, 'must list each origin once')
    .default('*')
    .transform((value) => (value.trim() === 'none' ? [] : entriesOf(value))),
});

/** Every environment variable the configuration reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(ConfigSchema.shape);

export interface Config {
  readonly databaseUrl: string;
  /** Connections each process opens to PostgreSQL at most. */
  readonly databasePoolSize: number;
  /** How long a webapi write waits on another session's lock; 0 = up to the statement timeout. */
  readonly databaseLockTimeoutMs: number;
  readonly amqpUrl: string;
  readonly redisUrl: string;
  readonly host: string;
  readonly ports: { readonly api: number; readonly notifications: number; readonly worker: number };
  /** Messages the worker handles at once: 1 = strict FIFO like the original; more keeps per-student order only. */
  readonly worker: {
    readonly prefetch: number;
    /**
     * Queues student events are spread over by student id; each is consumed by one worker at a time, and the workers
     * share them out. 1 = the one queue `students.worker`. Every role must have the same value.
     */
    readonly partitions: number;
    /** How long the worker remembers a handled message, so that a redelivery changes nothing twice. */
    readonly inboxRetentionSeconds: number;
  };
  /** How long sent outbox rows are kept: what an embedded restart can send again. */
  readonly outbox: { readonly sentRetentionSeconds: number };
  readonly log: {
    readonly level: string;
    readonly pretty: boolean;
    readonly seqUrl?: string;
    readonly seqApiKey?: string;
  };
  /** JWT bearer auth: on when a secret (HS256) or a JWKS URL is set; issuer and audience are checked when set. */
  readonly auth: {
    readonly jwtSecret?: string;
    readonly jwksUrl?: string;
    readonly issuer?: string;
    readonly audience?: string;
  };
  /** Writes one client (verified subject, else IP) may make per minute; 0 = no limit. */
  readonly rateLimit: { readonly writesPerMinute: number };
  /** Largest request head (request line and headers) the HTTP servers accept; larger gets 431. */
  readonly maxHeaderBytes: number;
  /** Reverse proxies whose X-Forwarded-For, -Proto and -Host are believed (addresses, CIDR ranges); none if empty. */
  readonly trustedProxies: readonly string[];
  /** OpenTelemetry traces go to the OTLP receiver when an endpoint is set; without one nothing is recorded. */
  readonly tracing: {
    /** Base URL of the receiver: traces go to `…/v1/traces`. */
    readonly otlpEndpoint?: string;
    /** The URL traces go to, as is; wins over `otlpEndpoint`. */
    readonly otlpTracesEndpoint?: string;
    readonly otlpProtocol: 'http/protobuf' | 'http/json';
  };
  readonly cache: {
    readonly ttlSeconds: number;
    /** Prefix of every cache key; a student is cached under `${keyPrefix}${id}` (the original's key was `Student_{id}`). */
    readonly keyPrefix: string;
  };
  /** Replay windows of request deduplication; 0 turns it off for that route. */
  readonly dedup: { readonly getWindowSeconds: number; readonly putWindowSeconds: number };
  readonly idempotency: {
    /** How long a key and its response are remembered. */
    readonly ttlSeconds: number;
    /** How long a key stays claimed by a request whose process stopped renewing it (it died). */
    readonly leaseSeconds: number;
  };
  /**
   * Retry, circuit breaker and timeout around the outbox relay's broker publishes (the original's Polly settings);
   * the worker's in-process retries take the count and delays.
   */
  readonly resilience: ResilienceOptions;
  readonly shutdownTimeoutMs: number;
  /** How long an HTTP server's close waits for requests in flight: half the shutdown, so the rest can stop too. */
  readonly httpDrainTimeoutMs: number;
  readonly notifications: {
    /** Notifications kept for clients that resume with Last-Event-ID. */
    readonly replayLogMaxEntries: number;
    readonly replayLogKeyPrefix: string;
    readonly heartbeatSeconds: number;
    /** SSE streams and hub connections one instance holds at most. */
    readonly maxConnections: number;
    /** Of those, what one token subject may hold (with auth on). */
    readonly maxConnectionsPerUser: number;
  };
  /** Origins browsers may call the webapi, the SSE stream and the hub from; `*` = any (then without credentials). */
  readonly corsOrigins: readonly string[];
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Whether a variable is set: a bare `NAME=` line in .env (or one of blanks) is unset, so its default applies; only a
 * written value (such as 0) turns a feature off.
 */
export function isWritten(value: string | undefined): value is string {
  return value !== undefined && value.trim() !== '';
}

const SECRET_VARIABLES = new Set(['AUTH_JWT_SECRET', 'SEQ_API_KEY']);

/** A value as an error message may show it: a secret not at all, a URL without its password. */
function shownValue(name: string, value: string): string {
  if (SECRET_VARIABLES.has(name)) return '***';
  return valueWithoutUrlPassword(value);
}

/**
 * Whether auth is on, and from which setting, for the line that says a role is listening: a secret left in `.env`
 * otherwise shows only as 401s.
 */
export function authSummary(auth: Config['auth']): string {
  if (auth.jwtSecret) return 'on (AUTH_JWT_SECRET)';
  return auth.jwksUrl ? 'on (AUTH_JWKS_URL)' : 'off';
}

export interface ParseOptions {
  /** Logs go to a terminal: pretty by default. */
  readonly stdoutIsTty?: boolean;
  /** Every role runs on this host (`npm start`, `npm run stack`): each needs a port of its own. */
  readonly allRoles?: boolean;
}

/** Validates an environment; throws ConfigError naming every bad variable and what it accepts. */
export function parseConfig(
  env: Record<string, string | undefined>,
  { stdoutIsTty = false, allRoles = false }: ParseOptions = {},
): Config {
  const written = Object.fromEntries(Object.entries(env).filter(([, value]) => isWritten(value)));
  const parsed = ConfigSchema.safeParse(written);
  if (!parsed.success) {
    // Checks that share a message say it once: 1e20 seconds fails both "whole" and the (safe-integer) maximum.
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0]);
      const value = env[name];
      return `${name}: ${issue.message}${value === undefined ? '' : ` (got ${JSON.stringify(shownValue(name, value))})`}`;
    });
    throw new ConfigError([...new Set(lines)]);
  }
  const c = parsed.data;
  const conflicts = [
    ...(c.AUTH_JWT_SECRET && c.AUTH_JWKS_URL
      ? ['AUTH_JWT_SECRET / AUTH_JWKS_URL: set one of them, not both (a secret for HS256, or a JWKS URL)']
      : []),
    // An identity provider signs tokens for every application it serves: without these, a token it issued for any
    // other API (or, for a multi-tenant provider, any tenant) would be taken here. ASP.NET Core refuses such tokens too.
    ...(c.AUTH_JWKS_URL && (!c.AUTH_AUDIENCE || !c.AUTH_ISSUER)
      ? [
          'AUTH_JWKS_URL: needs AUTH_AUDIENCE and AUTH_ISSUER too (an identity provider issues tokens for other ' +
            'applications as well; these say which ones are for this API)',
        ]
      : []),
    // The backoff would start at its longest and never grow: the two were most likely swapped.
    ...(c.RESILIENCE_BASE_DELAY_MS > c.RESILIENCE_MAX_DELAY_MS
      ? [
          `RESILIENCE_BASE_DELAY_MS / RESILIENCE_MAX_DELAY_MS: the first delay must not be longer than the longest ` +
            `(got ${c.RESILIENCE_BASE_DELAY_MS} and ${c.RESILIENCE_MAX_DELAY_MS})`,
        ]
      : []),
    // The in-process bus's queues die with the process: sent rows are the only copy of what its worker had not
    // handled, which the next start sends again; deleted sooner, such an event would be lost.
    ...(c.AMQP_URL === 'memory:' && c.OUTBOX_SENT_RETENTION_SECONDS < SENT_OUTBOX_RETENTION_MS / 1_000
      ? [
          `OUTBOX_SENT_RETENTION_SECONDS: with AMQP_URL=memory: at least ${SENT_OUTBOX_RETENTION_MS / 1_000} (sent ` +
            `rows are what a restart sends again if the worker had not handled them; shorten it with RabbitMQ) ` +
            `(got ${c.OUTBOX_SENT_RETENTION_SECONDS})`,
        ]
      : []),
    ...(c.INBOX_RETENTION_SECONDS < c.OUTBOX_SENT_RETENTION_SECONDS
      ? [
          `INBOX_RETENTION_SECONDS / OUTBOX_SENT_RETENTION_SECONDS: the worker must remember a message at least as ` +
            `long as the outbox keeps it, which an embedded restart sends again (got ${c.INBOX_RETENTION_SECONDS} ` +
            `and ${c.OUTBOX_SENT_RETENTION_SECONDS})`,
        ]
      : []),
    ...(allRoles ? sharedPorts(c) : []),
  ];
  if (conflicts.length > 0) throw new ConfigError(conflicts);
  return {
    databaseUrl: c.DATABASE_URL,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    databaseLockTimeoutMs: c.DATABASE_LOCK_TIMEOUT_MS,
    amqpUrl: c.AMQP_URL,
    redisUrl: c.REDIS_URL,
    host: c.HOST,
    ports: { api: c.API_PORT, notifications: c.NOTIFICATIONS_PORT, worker: c.WORKER_PORT },
    worker: {
      prefetch: c.WORKER_PREFETCH,
      partitions: c.WORKER_PARTITIONS,
      inboxRetentionSeconds: c.INBOX_RETENTION_SECONDS,
    },
    outbox: { sentRetentionSeconds: c.OUTBOX_SENT_RETENTION_SECONDS },
    log: {
      level: c.LOG_LEVEL,
      pretty: (c.LOG_FORMAT ?? (stdoutIsTty ? 'pretty' : 'json')) === 'pretty',
      ...(c.SEQ_URL ? { seqUrl: c.SEQ_URL } : {}),
      ...(c.SEQ_API_KEY ? { seqApiKey: c.SEQ_API_KEY } : {}),
    },
    auth: {
      ...(c.AUTH_JWT_SECRET ? { jwtSecret: c.AUTH_JWT_SECRET } : {}),
      ...(c.AUTH_JWKS_URL ? { jwksUrl: c.AUTH_JWKS_URL } : {}),
      ...(c.AUTH_ISSUER ? { issuer: c.AUTH_ISSUER } : {}),
      ...(c.AUTH_AUDIENCE ? { audience: c.AUTH_AUDIENCE } : {}),
    },
    tracing: {
      ...(c.OTEL_EXPORTER_OTLP_ENDPOINT ? { otlpEndpoint: c.OTEL_EXPORTER_OTLP_ENDPOINT } : {}),
      ...(c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        ? { otlpTracesEndpoint: c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT }
        : {}),
      otlpProtocol: c.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? c.OTEL_EXPORTER_OTLP_PROTOCOL,
    },
    rateLimit: { writesPerMinute: c.RATE_LIMIT_WRITES_PER_MINUTE },
    maxHeaderBytes: c.HTTP_MAX_HEADER_BYTES,
    trustedProxies: c.TRUST_PROXY ?? [],
    cache: { ttlSeconds: c.CACHE_TTL_SECONDS, keyPrefix: c.CACHE_KEY_PREFIX },
    dedup: { getWindowSeconds: c.DEDUP_GET_WINDOW_SECONDS, putWindowSeconds: c.DEDUP_PUT_WINDOW_SECONDS },
    idempotency: { ttlSeconds: c.IDEMPOTENCY_TTL_SECONDS, leaseSeconds: c.IDEMPOTENCY_LEASE_SECONDS },
    resilience: {
      durationOfBreakMs: c.RESILIENCE_DURATION_OF_BREAK_MS,
      failureRatio: c.RESILIENCE_FAILURE_RATIO,
      samplingDurationMs: c.RESILIENCE_SAMPLING_DURATION_MS,
      minimumThroughput: c.RESILIENCE_MINIMUM_THROUGHPUT,
      maxRetryAttempts: c.RESILIENCE_MAX_RETRY_ATTEMPTS,
      baseDelayMs: c.RESILIENCE_BASE_DELAY_MS,
      maxDelayMs: c.RESILIENCE_MAX_DELAY_MS,
      timeoutMs: c.RESILIENCE_TIMEOUT_MS,
    },
    corsOrigins: c.CORS_ORIGINS,
    shutdownTimeoutMs: c.SHUTDOWN_TIMEOUT_MS,
    httpDrainTimeoutMs: c.SHUTDOWN_TIMEOUT_MS / 2,
    notifications: {
      replayLogMaxEntries: c.REPLAY_LOG_MAX_ENTRIES,
      replayLogKeyPrefix: c.REPLAY_LOG_KEY_PREFIX,
      heartbeatSeconds: c.SSE_HEARTBEAT_SECONDS,
      maxConnections: c.NOTIFICATIONS_MAX_CONNECTIONS,
      maxConnectionsPerUser: c.NOTIFICATIONS_MAX_CONNECTIONS_PER_USER,
    },
  };
}

/**
 * Ports two roles on one host would both listen on: the second would fail only once the first had started, as a
 * port in use. 0 (any free port) is never shared.
 */
function sharedPorts(c: Record<'API_PORT' | 'NOTIFICATIONS_PORT' | 'WORKER_PORT', number>): string[] {
  const names = ['API_PORT', 'NOTIFICATIONS_PORT', 'WORKER_PORT'] as const;
  return [...new Set(names.map((name) => c[name]))]
    .filter((port) => port !== 0)
    .map((port) => names.filter((name) => c[name] === port))
    .filter((sharing) => sharing.length > 1)
    .map(
      (sharing) =>
        `${sharing.join(' / ')}: every role runs on this host, each on a port of its own (each is set to ${c[sharing[0]!]})`,
    );
}

/** Reads `.env` (when present; real environment variables win) and the process environment. */
function loadConfig(options: Omit<ParseOptions, 'stdoutIsTty'>): Config {
  const extraCaCerts = process.env.NODE_EXTRA_CA_CERTS;
  if (existsSync('.env')) process.loadEnvFile('.env');
  // Node reads it only as it starts: from .env, the CA of a private TLS server (rediss://, amqps://, PostgreSQL's
  // sslmode) would be ignored, and every connection to it refused as not trusted.
  if (process.env.NODE_EXTRA_CA_CERTS !== extraCaCerts)
    throw new ConfigError([
      'NODE_EXTRA_CA_CERTS: Node reads it only from the environment the process starts with, not from .env',
    ]);
  return parseConfig(process.env, { ...options, stdoutIsTty: process.stdout.isTTY === true });
}

/** For entry points: a bad configuration prints what to fix and exits with status 2, before anything starts. */
export function loadConfigOrExit(options: Omit<ParseOptions, 'stdoutIsTty'> = {}): Config {
  try {
    return loadConfig(options);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
}
