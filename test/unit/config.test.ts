import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CONFIG_VARIABLES, ConfigError, isWritten, parseConfig } from '../../src/config.ts';
import { withoutUrlPassword } from '../../src/infrastructure/logging/url-password.ts';

describe('configuration', () => {
  test('with nothing set, everything runs embedded on the default ports', () => {
    const config = parseConfig({});
    assert.equal(config.databaseUrl, 'pglite://./.data/pg');
    assert.equal(config.amqpUrl, 'memory:');
    assert.equal(config.redisUrl, 'memory:');
    assert.equal(config.host, '127.0.0.1');
    assert.deepEqual(config.ports, { api: 5000, notifications: 5001, worker: 5002 });
    assert.equal(config.log.level, 'info');
  });

  test('real servers are chosen by URL', () => {
    const config = parseConfig({
      DATABASE_URL: 'postgres://postgres@db:5432/app',
      AMQP_URL: 'amqp://guest:guest@mq:5672',
      REDIS_URL: 'redis://cache:6379/0',
      API_PORT: '0',
    });
    assert.equal(config.databaseUrl, 'postgres://postgres@db:5432/app');
    assert.equal(config.amqpUrl, 'amqp://guest:guest@mq:5672');
    assert.equal(config.redisUrl, 'redis://cache:6379/0');
    assert.equal(config.ports.api, 0);
  });

  test('a bad value stops start-up with a message naming the variable, the allowed values and what was given', () => {
    assert.throws(
      () => parseConfig({ API_PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /API_PORT: must be an integer from 0 to 65535.*\(got "eighty"\)/);
        assert.match(
          error.message,
          /DATABASE_URL: must be postgres:\/\/.*pglite:\/\/memory \(got "mysql:\/\/x"\)/,
        );
        assert.match(
          error.message,
          /LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent/,
        );
        assert.equal(error.problems.length, 3);
        return true;
      },
    );
    assert.throws(() => parseConfig({ NOTIFICATIONS_PORT: '70000' }), /NOTIFICATIONS_PORT/);
    // What URL() takes as the pglite scheme but the embedded database does not open (the PostgreSQL driver would
    // get it, and fail saying something about PostgreSQL).
    for (const embedded of ['pglite:/tmp/db', 'pglite:memory', 'PGLITE:///tmp/db', 'pglite://'])
      assert.throws(
        () => parseConfig({ DATABASE_URL: embedded }),
        /DATABASE_URL: must be pglite:\/\/DIR or pglite:\/\/memory for the embedded database/,
        embedded,
      );
    for (const embedded of ['pglite:///tmp/db', 'pglite://./.data/pg', 'pglite://memory'])
      assert.equal(parseConfig({ DATABASE_URL: embedded }).databaseUrl, embedded);
    assert.throws(() => parseConfig({ AMQP_URL: 'kafka://x' }), /AMQP_URL: must be memory: or amqp:/);
  });

  test('an empty value (a bare NAME= line in .env) is unset for every variable: its default applies', () => {
    assert.ok(CONFIG_VARIABLES.includes('CACHE_TTL_SECONDS') && CONFIG_VARIABLES.length > 40);
    const defaults = parseConfig({});
    for (const empty of ['', '  '])
      assert.deepEqual(
        parseConfig(Object.fromEntries(CONFIG_VARIABLES.map((name) => [name, empty]))),
        defaults,
        JSON.stringify(empty),
      );
    // The rule `npm run stack` reads the servers' URLs by, before it hands them to the roles.
    assert.deepEqual([undefined, '', '  ', '\t', '0', ' memory: '].map(isWritten), [
      false,
      false,
      false,
      false,
      true,
      true,
    ]);
  });

  test('an empty value neither switches a feature off nor stops start-up: only a written 0 switches off', () => {
    assert.equal(parseConfig({ RATE_LIMIT_WRITES_PER_MINUTE: '' }).rateLimit.writesPerMinute, 10_000);
    assert.equal(parseConfig({ RATE_LIMIT_WRITES_PER_MINUTE: '0' }).rateLimit.writesPerMinute, 0);
    assert.deepEqual(parseConfig({ DEDUP_GET_WINDOW_SECONDS: '', DEDUP_PUT_WINDOW_SECONDS: '' }).dedup, {
      getWindowSeconds: 30,
      putWindowSeconds: 5,
    });
    assert.deepEqual(parseConfig({ DEDUP_GET_WINDOW_SECONDS: '0', DEDUP_PUT_WINDOW_SECONDS: '0' }).dedup, {
      getWindowSeconds: 0,
      putWindowSeconds: 0,
    });
    assert.deepEqual(parseConfig({ CORS_ORIGINS: '' }).corsOrigins, ['*']);
    // No origin at all is said in words: an empty line falls back to the default like any other.
    assert.deepEqual(parseConfig({ CORS_ORIGINS: 'none' }).corsOrigins, []);
    assert.throws(() => parseConfig({ CORS_ORIGINS: ' , ' }), /CORS_ORIGINS: must list origins/);
    assert.throws(
      () => parseConfig({ CORS_ORIGINS: 'http://localhost:5001/' }),
      /CORS_ORIGINS: must list origins as/,
    );
    assert.throws(
      () => parseConfig({ CORS_ORIGINS: 'localhost:5001' }),
      /CORS_ORIGINS: must list origins as/,
    );
    assert.deepEqual(
      parseConfig({ CORS_ORIGINS: 'http://localhost:5001, https://a.example:8443' }).corsOrigins,
      ['http://localhost:5001', 'https://a.example:8443'],
    );
    assert.throws(() => parseConfig({ CACHE_KEY_PREFIX: '!' }), /CACHE_KEY_PREFIX: must be 1 to 64/);
    assert.throws(() => parseConfig({ SEQ_URL: 'notaurl' }), /SEQ_URL: must be the URL of a Seq server/);
    assert.equal(parseConfig({ SEQ_URL: 'http://seq:5341' }).log.seqUrl, 'http://seq:5341');
    assert.equal(parseConfig({ CACHE_TTL_SECONDS: '' }).cache.ttlSeconds, 900);
  });

  test('an empty port (a bare API_PORT= line) is unset: the default port, not any free one', () => {
    assert.deepEqual(parseConfig({ API_PORT: '', NOTIFICATIONS_PORT: '', WORKER_PORT: '' }).ports, {
      api: 5000,
      notifications: 5001,
      worker: 5002,
    });
  });

  test('tracing is off unless an OTLP endpoint is set; the protocol is OTLP/HTTP, protobuf by default', () => {
    assert.deepEqual(parseConfig({}).tracing, { otlpProtocol: 'http/protobuf' });
    assert.deepEqual(
      parseConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      }).tracing,
      { otlpEndpoint: 'http://collector:4318', otlpProtocol: 'http/json' },
    );
    assert.deepEqual(parseConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }).tracing, {
      otlpProtocol: 'http/protobuf',
    });
    assert.throws(
      () =>
        parseConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(
          error.message,
          /OTEL_EXPORTER_OTLP_ENDPOINT: must be the base URL of an OTLP\/HTTP receiver/,
        );
        assert.match(
          error.message,
          /OTEL_EXPORTER_OTLP_PROTOCOL: must be http\/protobuf or http\/json \(got "grpc"\)/,
        );
        return true;
      },
    );
  });

  test('the traces-specific OTLP endpoint and protocol win over the general ones, and turn tracing on alone', () => {
    assert.deepEqual(
      parseConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/custom',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      }).tracing,
      {
        otlpEndpoint: 'http://collector:4318',
        otlpTracesEndpoint: 'http://traces:4318/custom',
        otlpProtocol: 'http/json',
      },
    );
    assert.deepEqual(
      parseConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/v1/traces' }).tracing,
      {
        otlpTracesEndpoint: 'http://traces:4318/v1/traces',
        otlpProtocol: 'http/protobuf',
      },
    );
    assert.throws(
      () =>
        parseConfig({
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'traces:4317',
          OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(
          error.message,
          /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be the full URL traces are sent to/,
        );
        assert.match(
          error.message,
          /OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: must be http\/protobuf or http\/json/,
        );
        return true;
      },
    );
  });

  test('auth is off unless a key is configured; a key that cannot work stops start-up', () => {
    assert.deepEqual(parseConfig({}).auth, {});
    const secret = 'x'.repeat(32);
    assert.deepEqual(parseConfig({ AUTH_JWT_SECRET: secret, AUTH_AUDIENCE: 'api' }).auth, {
      jwtSecret: secret,
      audience: 'api',
    });
    assert.throws(() => parseConfig({ AUTH_JWT_SECRET: 'short' }), /AUTH_JWT_SECRET: must be at least 32/);
    assert.throws(
      () => parseConfig({ AUTH_JWKS_URL: 'file:///keys.json' }),
      /AUTH_JWKS_URL: must be an http/,
    );
    assert.throws(
      () =>
        parseConfig({ AUTH_JWKS_URL: 'http://idp.example/jwks.json', AUTH_ISSUER: 'i', AUTH_AUDIENCE: 'a' }),
      /AUTH_JWKS_URL: must be https/,
    );
    for (const local of [
      'http://localhost:8080/jwks',
      'http://127.0.0.1:8080/jwks',
      'http://[::1]:8080/jwks',
    ])
      assert.equal(
        parseConfig({ AUTH_JWKS_URL: local, AUTH_ISSUER: 'i', AUTH_AUDIENCE: 'a' }).auth?.jwksUrl,
        local,
        local,
      );
    assert.throws(
      () => parseConfig({ AUTH_JWT_SECRET: secret, AUTH_JWKS_URL: 'https://idp.example/jwks.json' }),
      /set one of them, not both/,
    );
    assert.throws(
      () =>
        parseConfig({ AUTH_JWKS_URL: 'https://idp.example/jwks.json', AUTH_ISSUER: 'https://idp.example' }),
      /AUTH_JWKS_URL: needs AUTH_AUDIENCE and AUTH_ISSUER/,
    );
    assert.throws(
      () => parseConfig({ AUTH_JWKS_URL: 'https://idp.example/jwks.json', AUTH_AUDIENCE: 'api' }),
      /AUTH_JWKS_URL: needs AUTH_AUDIENCE and AUTH_ISSUER/,
    );
  });

  test('the write rate limit and the header limit have generous defaults and accept only sane values', () => {
    const defaults = parseConfig({});
    assert.equal(defaults.rateLimit.writesPerMinute, 10_000);
    assert.equal(defaults.maxHeaderBytes, 16_384);
    assert.equal(parseConfig({ RATE_LIMIT_WRITES_PER_MINUTE: '0' }).rateLimit.writesPerMinute, 0);
    assert.throws(() => parseConfig({ RATE_LIMIT_WRITES_PER_MINUTE: '-1' }), /RATE_LIMIT_WRITES_PER_MINUTE/);
    assert.throws(
      () => parseConfig({ HTTP_MAX_HEADER_BYTES: '100' }),
      /HTTP_MAX_HEADER_BYTES: must be a whole/,
    );
  });

  test('a value just past a bound is refused naming the variable and its range; the bound itself is taken', () => {
    // [variable, refused, taken at the bound, what the refusal says]
    const bounds: [string, string, string, string][] = [
      ['API_PORT', '65536', '65535', 'must be an integer from 0 to 65535'],
      ['CACHE_TTL_SECONDS', '0', '1', 'must be a whole number of seconds, at least 1'],
      ['IDEMPOTENCY_LEASE_SECONDS', '0', '1', 'must be a whole number of seconds, at least 1'],
      ['SSE_HEARTBEAT_SECONDS', '0', '1', 'must be a whole number of seconds, at least 1'],
      // 0 would be no limit at all to AMQP: not strict FIFO, the opposite.
      ['WORKER_PREFETCH', '0', '1', 'must be a whole number from 1 to 1000'],
      ['WORKER_PREFETCH', '1001', '1000', 'must be a whole number from 1 to 1000'],
      ['SHUTDOWN_TIMEOUT_MS', '0', '1', 'must be a whole, positive number of milliseconds'],
      ['RESILIENCE_TIMEOUT_MS', '0', '1', 'must be a whole, positive number of milliseconds'],
      ['RESILIENCE_FAILURE_RATIO', '0', '0.01', 'must be a number above 0, at most 1'],
      ['RESILIENCE_FAILURE_RATIO', '1.5', '1', 'must be a number above 0, at most 1'],
      ['RESILIENCE_MAX_RETRY_ATTEMPTS', '21', '20', 'must be a whole number from 0 to 20'],
      ['RESILIENCE_MINIMUM_THROUGHPUT', '0', '1', 'must be a whole number from 1 to 10000'],
      ['DATABASE_POOL_SIZE', '0', '1', 'must be a whole number from 1 to 1000'],
      ['DATABASE_POOL_SIZE', '1001', '1000', 'must be a whole number from 1 to 1000'],
      [
        'DATABASE_LOCK_TIMEOUT_MS',
        '30001',
        '30000',
        'must be a whole number of milliseconds from 0 to 30000',
      ],
      ['RESILIENCE_SAMPLING_DURATION_MS', '0', '1', 'must be a whole, positive number of milliseconds'],
      ['REPLAY_LOG_MAX_ENTRIES', '99', '100', 'must be a whole number from 100 to 10000000'],
      ['HTTP_MAX_HEADER_BYTES', '1048577', '1048576', 'must be a whole number of bytes from 1024 to 1048576'],
      // Node's timers hold at most 2^31 - 1 ms: a longer delay fires after 1 ms (a heartbeat every millisecond, a stop
      // killed at once, every publish timed out).
      ['SHUTDOWN_TIMEOUT_MS', '2147483648', '2147483647', 'must be a whole, positive number of milliseconds'],
      [
        'RESILIENCE_TIMEOUT_MS',
        '2147483648',
        '2147483647',
        'must be a whole, positive number of milliseconds',
      ],
      ['SSE_HEARTBEAT_SECONDS', '2147484', '2147483', 'must be a whole number of seconds, at least 1'],
      ['IDEMPOTENCY_LEASE_SECONDS', '2147484', '2147483', 'must be a whole number of seconds, at least 1'],
      // PostgreSQL's intervals (and Date) overflow long before MAX_SAFE_INTEGER seconds: a keyed write was a 500.
      [
        'IDEMPOTENCY_TTL_SECONDS',
        '3153600001',
        '3153600000',
        'must be a whole number of seconds, at least 1',
      ],
      ['CACHE_KEY_PREFIX', 'k'.repeat(65), 'k'.repeat(64), 'must be 1 to 64 letters, digits, or _ : . -'],
      [
        'REPLAY_LOG_KEY_PREFIX',
        'k'.repeat(65),
        'k'.repeat(64),
        'must be 1 to 64 letters, digits, or _ : . -',
      ],
    ];
    for (const [name, refused, taken, says] of bounds) {
      assert.throws(
        () => parseConfig({ [name]: refused }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          const [problem = '', ...more] = error.problems;
          assert.deepEqual(more, []);
          assert.ok(problem.startsWith(`${name}: ${says}`), problem);
          assert.ok(problem.endsWith(`(got ${JSON.stringify(refused)})`), problem);
          return true;
        },
        `${name}=${refused}`,
      );
      assert.doesNotThrow(() => parseConfig({ [name]: taken }), `${name}=${taken}`);
    }
  });

  test('a number is written in decimal digits: 0x1388, 1e3 or 5.0 is refused, blanks around it are not', () => {
    for (const [name, value] of [
      ['API_PORT', '0x1388'],
      ['WORKER_PREFETCH', '1e1'],
      ['CACHE_TTL_SECONDS', '5.0'],
      ['SHUTDOWN_TIMEOUT_MS', '+3000'],
      ['RESILIENCE_FAILURE_RATIO', '0x1'],
      ['RESILIENCE_FAILURE_RATIO', '1e-1'],
      ['RESILIENCE_FAILURE_RATIO', 'Infinity'],
    ] as const)
      assert.throws(
        () => parseConfig({ [name]: value }),
        new RegExp(`${name}: must be a`),
        `${name}=${value}`,
      );
    assert.equal(parseConfig({ API_PORT: ' 5000 ' }).ports.api, 5_000);
    assert.equal(parseConfig({}).databasePoolSize, 10);
    assert.equal(parseConfig({}).databaseLockTimeoutMs, 5_000);
    assert.equal(parseConfig({ DATABASE_LOCK_TIMEOUT_MS: '0' }).databaseLockTimeoutMs, 0);
    for (const [ratio, taken] of [
      ['0.5', 0.5],
      ['.25', 0.25],
      ['1', 1],
    ] as const)
      assert.equal(parseConfig({ RESILIENCE_FAILURE_RATIO: ratio }).resilience.failureRatio, taken, ratio);
    // Past the safe integers it fails two checks with one message: said once.
    assert.throws(
      () => parseConfig({ CACHE_TTL_SECONDS: '99999999999999999999' }),
      (error: ConfigError) => error.message.split('CACHE_TTL_SECONDS:').length === 2,
    );
  });

  test('a URL is refused when what opens it would read it otherwise: blanks around it, MEMORY:, no server host', () => {
    const refused: [string, string, RegExp][] = [
      ['AMQP_URL', 'MEMORY:', /^AMQP_URL: must be memory: or amqp:/],
      ['AMQP_URL', 'memory:x', /^AMQP_URL: must be memory: or amqp:/],
      ['REDIS_URL', 'Memory:', /^REDIS_URL: must be memory: or redis:/],
      ['AMQP_URL', ' memory:', /^AMQP_URL: must not start or end with blanks/],
      ['DATABASE_URL', 'pglite://memory ', /^DATABASE_URL: must not start or end with blanks/],
      ['AMQP_URL', 'amqp://', /^AMQP_URL: must be memory: or amqp:/],
      ['REDIS_URL', 'redis://:6379/1', /^REDIS_URL: must be memory: or redis:/],
    ];
    for (const [name, value, says] of refused)
      assert.throws(
        () => parseConfig({ [name]: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.problems.length, 1, error.message);
          assert.match(error.problems[0]!, says);
          return true;
        },
        `${name}=${JSON.stringify(value)}`,
      );
    assert.equal(parseConfig({ AMQP_URL: 'amqp://mq' }).amqpUrl, 'amqp://mq');
  });

  test('CORS_ORIGINS: * stands alone (next to origins it would drop their credentials), and each origin is listed once', () => {
    for (const value of ['*,http://a.example', 'http://a.example, *', 'http://a.example,http://a.example'])
      assert.throws(() => parseConfig({ CORS_ORIGINS: value }), /CORS_ORIGINS: must/, value);
    assert.deepEqual(parseConfig({ CORS_ORIGINS: ' * ' }).corsOrigins, ['*']);
  });

  test('TRUST_PROXY: no proxy is trusted unless listed, by address, CIDR range or named range', () => {
    assert.deepEqual(parseConfig({}).trustedProxies, []);
    assert.deepEqual(
      parseConfig({ TRUST_PROXY: ' 10.0.0.0/8, 127.0.0.1,fd00::/8,loopback ' }).trustedProxies,
      ['10.0.0.0/8', '127.0.0.1', 'fd00::/8', 'loopback'],
    );
    // `true` would trust whoever reaches a role directly; a host name would be compared with addresses, never equal.
    // /0: every address, which Fastify refuses at start (a stack trace, not this message).
    for (const value of [
      'true',
      '1',
      'proxy.internal',
      '10.0.0.0/33',
      '::1/129',
      '10.0.0.0/8/8',
      ',',
      '0.0.0.0/0',
      '::/0',
    ])
      assert.throws(() => parseConfig({ TRUST_PROXY: value }), /TRUST_PROXY: must list the addresses/, value);
  });

  test('a refused value is shown without its secret: a secret not at all, a URL without its password', () => {
    assert.throws(
      () => parseConfig({ AUTH_JWT_SECRET: 'shortS3cret' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        /AUTH_JWT_SECRET: .*\(got "\*\*\*"\)/.test(error.message) &&
        !error.message.includes('shortS3cret'),
    );
    assert.throws(
      () => parseConfig({ AMQP_URL: 'kafka://user:CfgS3cret@mq:9092' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes('(got "kafka://user:***@mq:9092")') &&
        !error.message.includes('CfgS3cret'),
    );
    // Malformed URLs are the ones refused, so the ones shown: a password with `/`, `#` or `@`, a lost `:`.
    for (const [name, value] of [
      ['DATABASE_URL', 'mysql://u:p@ssS3cret@h/db'],
      ['AMQP_URL', 'amqps//guest:pa/ssS3cret@host'],
      ['AMQP_URL', 'ampq://guest:pa/ss#S3cret@host:5672'],
      ['DATABASE_URL', 'postgres//u:S3cret@h/db'],
      ['DATABASE_URL', "mysql://u:pa'ssS3cret@h/db"],
      ['DATABASE_URL', 'mysql://u:pa ssS3cret@h/db'],
      // A password of digits alone is no port.
      ['DATABASE_URL', 'postgres//app:20240917@db:5432/app'],
      ['REDIS_URL', 'redis//:987654321@cache:6379'],
    ] as const)
      assert.throws(
        () => parseConfig({ [name]: value }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.message.includes(':***@') &&
          !error.message.includes('S3cret'),
        `${name}=${value}`,
      );
    // The PostgreSQL driver takes a password as a query parameter too.
    assert.throws(
      () => parseConfig({ DATABASE_URL: 'mysql://app@db/app?sslmode=require&Password=QueryS3cret&x=1' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes('(got "mysql://app@db/app?sslmode=require&Password=***&x=1")') &&
        !error.message.includes('QueryS3cret'),
    );
    // A port is no password, even with an `@` further on.
    const withPort = 'mysql://db.internal:5432/app?application_name=api@eu';
    assert.throws(
      () => parseConfig({ DATABASE_URL: withPort }),
      (error: unknown) => error instanceof ConfigError && error.message.includes(`(got "${withPort}")`),
    );
    assert.equal(withoutUrlPassword(`banner ${withPort}`), `banner ${withPort}`);
    assert.equal(withoutUrlPassword('at amqp://u:p/w@h:5672 and x'), 'at amqp://u:***@h:5672 and x');
    // fetch refuses credentials in a URL: such a Seq or JWKS URL could never work.
    assert.throws(
      () => parseConfig({ SEQ_URL: 'http://user:pw@seq:5341' }),
      /SEQ_URL: must not carry a user/,
    );
    assert.throws(
      () => parseConfig({ AUTH_JWKS_URL: 'https://user:pw@idp/jwks.json' }),
      /AUTH_JWKS_URL: must not carry a user/,
    );
  });

  test('a first backoff delay longer than the longest is refused, naming both', () => {
    assert.throws(
      () => parseConfig({ RESILIENCE_BASE_DELAY_MS: '60000', RESILIENCE_MAX_DELAY_MS: '1000' }),
      /RESILIENCE_BASE_DELAY_MS \/ RESILIENCE_MAX_DELAY_MS: .*\(got 60000 and 1000\)/,
    );
    assert.doesNotThrow(() =>
      parseConfig({ RESILIENCE_BASE_DELAY_MS: '1000', RESILIENCE_MAX_DELAY_MS: '1000' }),
    );
  });

  test('by default the worker takes one message at a time (strict FIFO), and HTTP drains for half the shutdown time', () => {
    const defaults = parseConfig({});
    assert.equal(defaults.worker.prefetch, 1);
    assert.equal(defaults.shutdownTimeoutMs, 10_000);
    assert.equal(defaults.httpDrainTimeoutMs, 5_000, 'the other half is for the worker and the adapters');
    const configured = parseConfig({ WORKER_PREFETCH: '50', SHUTDOWN_TIMEOUT_MS: '3000' });
    assert.equal(configured.worker.prefetch, 50);
    assert.equal(configured.shutdownTimeoutMs, 3_000);
    assert.equal(configured.httpDrainTimeoutMs, 1_500);
  });

  test('logs are pretty in a terminal and JSON otherwise, unless LOG_FORMAT says; SEQ_API_KEY goes with SEQ_URL', () => {
    assert.equal(parseConfig({}, { stdoutIsTty: false }).log.pretty, false, 'piped: JSON lines');
    assert.equal(parseConfig({}, { stdoutIsTty: true }).log.pretty, true, 'in a terminal: pretty');
    assert.equal(parseConfig({ LOG_FORMAT: 'json' }, { stdoutIsTty: true }).log.pretty, false);
    assert.equal(parseConfig({ LOG_FORMAT: 'pretty' }, { stdoutIsTty: false }).log.pretty, true);
    assert.deepEqual(parseConfig({ SEQ_URL: 'http://seq:5341', SEQ_API_KEY: 'key-1' }).log, {
      level: 'info',
      pretty: false,
      seqUrl: 'http://seq:5341',
      seqApiKey: 'key-1',
    });
  });

  test('npm start and npm run stack refuse two roles on one port before anything listens; roles run apart may share a number', () => {
    assert.throws(
      () => parseConfig({ API_PORT: '8080', NOTIFICATIONS_PORT: '8080' }, { allRoles: true }),
      (error: Error) =>
        error instanceof ConfigError &&
        error.problems.length === 1 &&
        /^API_PORT \/ NOTIFICATIONS_PORT: .*each on a port of its own \(each is set to 8080\)$/.test(
          error.problems[0]!,
        ),
    );
    assert.throws(
      () =>
        parseConfig(
          { API_PORT: '9000', NOTIFICATIONS_PORT: '9000', WORKER_PORT: '9000' },
          { allRoles: true },
        ),
      /API_PORT \/ NOTIFICATIONS_PORT \/ WORKER_PORT: .*\(each is set to 9000\)/,
    );
    assert.deepEqual(
      parseConfig({ API_PORT: '0', NOTIFICATIONS_PORT: '0', WORKER_PORT: '0' }, { allRoles: true }).ports,
      { api: 0, notifications: 0, worker: 0 },
      'any free port, for each',
    );
    assert.equal(
      parseConfig({ API_PORT: '8080', NOTIFICATIONS_PORT: '8080' }).ports.api,
      8080,
      'one role each',
    );
  });

  test('the worker has one queue unless WORKER_PARTITIONS says how many (1 to 64)', () => {
    assert.equal(parseConfig({}).worker.partitions, 1);
    assert.equal(parseConfig({ WORKER_PARTITIONS: '4' }).worker.partitions, 4);
    assert.equal(parseConfig({ WORKER_PARTITIONS: '64' }).worker.partitions, 64);
    for (const bad of ['0', '65', '2.5', 'four', '-1'])
      assert.throws(
        () => parseConfig({ WORKER_PARTITIONS: bad }),
        new RegExp(
          `WORKER_PARTITIONS: must be a whole number from 1 to 64 \\(1 = one queue\\) \\(got ${JSON.stringify(bad)}\\)`,
        ),
        bad,
      );
  });

  test('the outbox keeps sent rows a day and the inbox remembers handled messages 7 days; the inbox never less than the outbox', () => {
    assert.equal(parseConfig({}).worker.inboxRetentionSeconds, 7 * 86_400);
    assert.equal(parseConfig({}).outbox.sentRetentionSeconds, 86_400);
    assert.equal(parseConfig({ INBOX_RETENTION_SECONDS: '86400' }).worker.inboxRetentionSeconds, 86_400);
    assert.throws(
      () => parseConfig({ INBOX_RETENTION_SECONDS: '3600' }),
      /INBOX_RETENTION_SECONDS \/ OUTBOX_SENT_RETENTION_SECONDS: the worker must remember a message at least as long as the outbox keeps it.*\(got 3600 and 86400\)/,
    );
    // With RabbitMQ, sent rows only help a diagnosis: both can be shortened together.
    const rabbitMq = 'amqp://guest:guest@127.0.0.1:5672';
    const short = parseConfig({
      AMQP_URL: rabbitMq,
      OUTBOX_SENT_RETENTION_SECONDS: '3600',
      INBOX_RETENTION_SECONDS: '3600',
    });
    assert.equal(short.outbox.sentRetentionSeconds, 3_600);
    assert.equal(short.worker.inboxRetentionSeconds, 3_600);
    // With the in-process bus, sent rows are the only copy of what the worker had not handled at a crash.
    assert.throws(
      () => parseConfig({ OUTBOX_SENT_RETENTION_SECONDS: '3600', INBOX_RETENTION_SECONDS: '3600' }),
      /OUTBOX_SENT_RETENTION_SECONDS: with AMQP_URL=memory: at least 86400 .*\(got 3600\)/,
    );
    assert.throws(
      () => parseConfig({ AMQP_URL: rabbitMq, OUTBOX_SENT_RETENTION_SECONDS: '59' }),
      /OUTBOX_SENT_RETENTION_SECONDS: must be a whole number of seconds, at least 60/,
    );
    assert.throws(
      () =>
        parseConfig({
          AMQP_URL: rabbitMq,
          INBOX_RETENTION_SECONDS: '600',
          OUTBOX_SENT_RETENTION_SECONDS: '60',
        }),
      /INBOX_RETENTION_SECONDS: must be a whole number of seconds, at least 3600/,
    );
  });
});

test('NODE_EXTRA_CA_CERTS in .env, which Node would ignore, stops the start with a message saying so', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tbe-config-'));
  try {
    writeFileSync(join(dir, '.env'), 'NODE_EXTRA_CA_CERTS=/etc/ssl/private-ca.pem\n');
    const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
    const started = spawnSync(
      process.execPath,
      [
        '--import',
        import.meta.resolve('tsx'),
        '--input-type=module',
        '--eval',
        `import { loadConfigOrExit } from '${import.meta.resolve('../../src/config.ts')}'; loadConfigOrExit();`,
      ],
      { cwd: dir, env, encoding: 'utf8' },
    );
    assert.equal(started.status, 2, started.stderr);
    assert.match(started.stderr, /NODE_EXTRA_CA_CERTS: Node reads it only from the environment/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
