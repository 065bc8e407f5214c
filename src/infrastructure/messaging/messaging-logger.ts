/** The slice of a pino-style logger the bus adapters need; pino's Logger fits it as is. */
export interface MessagingLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export const silentMessagingLogger: MessagingLogger = {
  info: () => {},
  warn: () => {},
  error: () => {},
};
