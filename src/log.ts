/**
 * The logger a module takes: pino's logger and Fastify's `app.log` fit it, and a test passes a silent
 * one. A module that only warns asks for `Pick<Log, 'warn'>`.
 */
export interface Log {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}
