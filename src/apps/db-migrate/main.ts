// `npm run db:migrate`: applies the SQL migrations in drizzle/ to DATABASE_URL, then exits.
import { loadConfigOrExit } from '../../config.ts';
import { createLogger } from '../../infrastructure/logging/logger.ts';
import { valueWithoutUrlPassword } from '../../infrastructure/logging/url-password.ts';
import { openDatabase } from '../../infrastructure/persistence/database.ts';

const config = loadConfigOrExit();
const logger = createLogger({ ...config.log, name: 'migrate' });
try {
  const database = await openDatabase(config.databaseUrl, logger);
  try {
    await database.migrate();
    // Which database, not only which engine: `database: "postgres"` read as the database of that name.
    logger.info(
      { databaseUrl: valueWithoutUrlPassword(config.databaseUrl), engine: database.kind },
      'migrations applied',
    );
  } finally {
    await database.close();
  }
} catch (error) {
  // As the roles do: one line that says what failed (a database that cannot be reached, a statement refused), not an
  // uncaught exception's stack.
  logger.fatal({ err: error }, 'migrations not applied');
  process.exitCode = 1;
}
