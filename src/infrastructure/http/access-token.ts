/** The name SignalR clients use in the query string; the SSE stream takes it in the query and as a cookie. */
export const ACCESS_TOKEN = 'access_token';
const MAY_NAME_ACCESS_TOKEN = /%|access_token/i;

/** A query parameter's name as the query parser reads it: `access%5Ftoken` is `access_token`. */
function decodedName(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name; // malformed percent-encoding: the parser keeps the name as sent
  }
}

/** `url` with the value of every `access_token` query parameter masked, for logs and problem details. */
export function withoutAccessToken(url: string): string {
  const queryStart = url.indexOf('?');
  // The usual request log line: no query, or one that cannot name the parameter (it would need `%` or the name).
  if (queryStart === -1 || !MAY_NAME_ACCESS_TOKEN.test(url.slice(queryStart))) return url;
  const parameters = url
    .slice(queryStart + 1)
    .split('&')
    .map((parameter) => {
      const separator = parameter.indexOf('=');
      if (separator === -1) return parameter;
      const name = parameter.slice(0, separator);
      // Any case: masking a parameter too many costs nothing.
      return decodedName(name).toLowerCase() === ACCESS_TOKEN ? `${name}=[redacted]` : parameter;
    });
  return `${url.slice(0, queryStart + 1)}${parameters.join('&')}`;
}
