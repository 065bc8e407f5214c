// Takes the lead lock `argv[3]` on the PostgreSQL database `argv[2]`, prints `held`, and keeps it until killed: a
// holder a test can freeze (SIGSTOP) as a long pause would.
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';

const [url = '', key = '0'] = process.argv.slice(2);
const database = await openDatabase(url, createLogger({ level: 'silent', pretty: false }));
const leadership = await database.tryLead(Number(key));
process.stdout.write(leadership ? 'held\n' : 'not held\n');
setInterval(() => {}, 60_000);
