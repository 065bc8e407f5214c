/**
 * Free text (an error's message) with the password of every `scheme://user:password@host` URL in it masked. A URL
 * in text ends at a space or a quote; for one whole value, `valueWithoutUrlPassword` masks whatever the password holds.
 */
export function withoutUrlPassword(text: string): string {
  // `user:` after `//` (or at the start of a word, for a URL that lost its `://`), then everything up to the word's
  // last `@`: a URL refused as malformed is the one most likely to have a `/`, `#` or `@` in its password. Not a port
  // (`host:5432/db?name=a@b` has no password).
  return text.replace(
    /((?:^|[\s"'(=]|\/\/)[^/?#@:\s"']*):(?!\/\/)(?!\d+(?:[/?#\s"']|$))[^\s"']*@/g,
    '$1:***@',
  );
}

/**
 * One value that is a URL (or meant to be one: a configured value, an endpoint, a server `npm run stack` names): its
 * password runs from the user's `:` to the last `@`, whatever it holds (quotes, spaces).
 */
export function valueWithoutUrlPassword(value: string): string {
  return withoutPasswordParameters(withoutUserPassword(value));
}

function withoutUserPassword(value: string): string {
  const at = value.lastIndexOf('@');
  if (at === -1) return value;
  const slashes = value.indexOf('//');
  const user = slashes !== -1 && slashes < at ? slashes + 2 : 0;
  const colon = value.indexOf(':', user);
  // A port ends where the path, query or fragment begins; digits that run up to the `@` are a password.
  if (colon === -1 || colon > at || /^\d+[/?#]/.test(value.slice(colon + 1, at))) return value;
  return `${value.slice(0, colon)}:***${value.slice(at)}`;
}

/** The PostgreSQL driver also takes the password as a query parameter (`?password=`, `&sslpassword=`). */
function withoutPasswordParameters(value: string): string {
  return value.replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***');
}
