/**
 * The first name that an object of `json` (valid JSON text) holds twice, compared as parsed (`"a"` and `"\u0061"` are
 * one name); undefined when none does.
 */
export function repeatedName(json: string): string | undefined {
  // One set of names per open object; null for an array.
  const open: (Set<string> | null)[] = [];
  for (let at = 0; at < json.length; at++) {
    const char = json[at];
    if (char === '{') open.push(new Set());
    else if (char === '[') open.push(null);
    else if (char === '}' || char === ']') open.pop();
    else if (char === '"') {
      const start = at;
      for (at++; json[at] !== '"'; at++) if (json[at] === '\\') at++;
      const names = open.at(-1);
      if (!names) continue;
      let next = at + 1;
      while (json[next] === ' ' || json[next] === '\t' || json[next] === '\n' || json[next] === '\r') next++;
      if (json[next] !== ':') continue;
      const name = JSON.parse(json.slice(start, at + 1)) as string;
      if (names.has(name)) return name;
      names.add(name);
    }
  }
  return undefined;
}
