/**
 * How many header lines named `name` (in lower case) a request sent. Node keeps only the first line of some
 * headers (Host, Authorization, …) and joins the lines of others with ", ": either way, its `headers` cannot tell.
 */
export function headerLines(rawHeaders: readonly string[], name: string): number {
  let lines = 0;
  for (let index = 0; index < rawHeaders.length; index += 2) {
    const header = rawHeaders[index]!;
    // The length first: most names differ in it, and lowercasing allocates.
    if (header.length === name.length && header.toLowerCase() === name) lines++;
  }
  return lines;
}
