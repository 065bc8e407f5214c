import type { Database } from './database.ts';
import { sqlStatement } from './sql.ts';

const statements = {
  make: sqlStatement('deployment_make', 'insert into deployment default values on conflict do nothing'),
  // Its own statement, after the insert: a process that lost the race to make the row sees the winner's.
  read: sqlStatement('deployment_read', `select id || '/' || current_database() as id from deployment`),
};

/**
 * This deployment's name on shared infrastructure (see DeploymentConflictError): the id its database made at the
 * first start, and the database's name, so a copy of the database under another name (a staging restored from
 * production's backup) names another deployment. Survives a dump and restore, a move and a major upgrade.
 */
export async function deploymentIdOf(database: Database): Promise<string> {
  await database.sql.query(statements.make, []);
  const [row] = await database.sql.query<{ id: string }>(statements.read, []);
  if (!row) throw new Error('the deployment row is missing after it was made');
  return row.id;
}
