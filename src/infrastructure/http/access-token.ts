/** The name SignalR clients use in the query string; the SSE stream takes it in the query and as a cookie. */
export const ACCESS_TOKEN = 'access_token';
const ONLY_ACCESS_TOKEN: readonly string[] = [ACCESS_TOKEN];

/** A query parameter's name as the query parser reads it: `access%5Ftoken` is `access_token`. */
function decodedName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name; // malformed percent-encoding: the parser keeps the name as sent
  }
}

/**
 * `url` with the value of every `access_token` query parameter masked, for logs and problem details; `names` (lower
 * case) lists the parameters to mask when there are more secret ones (a SignalR connection token, `id`).
 */
export function withoutQuerySecrets(url: string, names: readonly string[] = ONLY_ACCESS_TOKEN): string {
  const queryStart = url.indexOf('?');
  if (queryStart === -1) return url;
  // The usual request log line: a query that cannot name a masked parameter (it would need `%` or the name).
  const query = url.slice(queryStart).toLowerCase();
  if (!query.includes('%') && !names.some((name) => query.includes(name))) return url;
  const parameters = url
    .slice(queryStart + 1)
    .split('&')
    .map((parameter) => {
      const separator = parameter.indexOf('=');
      if (separator === -1) return parameter;
      const name = parameter.slice(0, separator);
      // Any case: masking a parameter too many costs nothing.
      return names.includes(decodedName(name).toLowerCase()) ? `${name}=[redacted]` : parameter;
    });
  return `${url.slice(0, queryStart + 1)}${parameters.join('&')}`;
}
