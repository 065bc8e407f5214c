import { v7 } from 'uuid';
import type { IdGenerator } from '../../application/ports/id-generator.ts';

export const uuidV7Generator: IdGenerator = { next: () => v7() };
