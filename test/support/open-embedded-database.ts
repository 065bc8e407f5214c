// Opens the embedded database in `argv[2]` at the instant `argv[3]` (epoch ms), so that two processes race for it,
// and prints `opened` (then closes it) or `refused: <message>`.
import { createLogger } from '../../src/infrastructure/logging/logger.ts';
import { openDatabase } from '../../src/infrastructure/persistence/database.ts';

const [dir = '', at = '0'] = process.argv.slice(2);
const start = Number(at);
while (Date.now() < start); // spin: a timer would let one process start late
try {
  const database = await openDatabase(`pglite://${dir}`, createLogger({ level: 'silent', pretty: false }));
  process.stdout.write('opened\n');
  await database.close();
} catch (error) {
  process.stdout.write(`refused: ${(error as Error).message}\n`);
}
