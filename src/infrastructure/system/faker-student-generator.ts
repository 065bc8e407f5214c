import { faker } from '@faker-js/faker/locale/en';
import type { StudentDataGenerator } from '../../application/ports/student-data-generator.ts';

export const fakerStudentGenerator: StudentDataGenerator = {
  generate() {
    const firstName = faker.person.firstName();
    const lastName = faker.person.lastName();
    return { firstName, lastName, email: faker.internet.email({ firstName, lastName }).toLowerCase() };
  },
};
