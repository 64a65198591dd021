// One error class with a code and an HTTP status; every named error of the domain extends it, and
// src/plugins/error-handler.plugin.ts is the one place that turns them into `{ code, message }`.

export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = new.target.name
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super(404, 'NOT_FOUND', `${what} not found`)
  }
}

export class DependencyUnavailableError extends AppError {
  constructor(dependency: string) {
    super(503, 'SERVICE_UNAVAILABLE', `${dependency} is unavailable, try again shortly`)
  }
}
