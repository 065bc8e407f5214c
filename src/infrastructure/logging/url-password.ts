/**
 * Text with the password of every `scheme://user:password@host` URL in it masked: for configuration errors and log
 * lines that show a URL an operator set (DATABASE_URL, AMQP_URL and the OTLP endpoint may carry one), and for the
 * servers `npm run stack` names.
 */
export function withoutUrlPassword(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^/?#@:\s"]*):[^/?#@\s"]*@/gi, '$1:***@');
}
