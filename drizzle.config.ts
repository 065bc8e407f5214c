import { defineConfig } from 'drizzle-kit';

// One schema, one generated SQL migration set, applied to both PostgreSQL and PGlite by migrate().
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/infrastructure/persistence/schema.ts',
  out: './drizzle',
});
