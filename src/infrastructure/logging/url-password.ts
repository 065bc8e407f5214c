/**
 * Text with the password of every `scheme://user:password@host` URL in it masked: for configuration errors and log
 * lines that show a URL an operator set (DATABASE_URL, AMQP_URL and the OTLP endpoint may carry one), and for the
 * servers `npm run stack` names.
 */
export function withoutUrlPassword(text: string): string {
  // `user:` after `//` (or at the start of a word, for a URL that lost its `://`), then everything up to the word's
  // last `@`: a value refused as malformed is the one most likely to have a `/`, `#` or `@` in its password.
  return text.replace(/((?:^|[\s"'(=]|\/\/)[^/?#@:\s"']*):(?!\/\/)[^\s"']*@/g, '$1:***@');
}
