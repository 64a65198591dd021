// One error class with a code and an HTTP status; every named error of the domain extends it, and
// src/plugins/error-handler.plugin.ts is the one place that turns them into `{ code, message }`.

export class AppError extends Error {
  /** Extra response headers, e.g. Retry-After. */
  headers: Record<string, string> = {}

  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    // A named error is an answer (SOLD_OUT, 404), not a bug: it skips the stack trace, which in a
    // stampede costs more than the rest of a sold-out answer. Unexpected errors keep theirs.
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message)
    Error.stackTraceLimit = limit
    this.name = new.target.name
  }
}

/** A named error whose status, code and message never vary. */
function fixedAnswer(statusCode: number, code: string, message: string) {
  return class extends AppError {
    constructor() {
      super(statusCode, code, message)
    }
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super(404, 'NOT_FOUND', `${what} not found`)
  }
}

export class SkuTakenError extends AppError {
  constructor(sku: string) {
    super(409, 'SKU_TAKEN', `a product with SKU ${sku} exists already`)
  }
}

export class InvalidCursorError extends fixedAnswer(
  400,
  'INVALID_CURSOR',
  'the cursor is not one this API handed out',
) {}

export class UnauthorizedError extends AppError {
  constructor(message = 'a valid Bearer token is required') {
    super(401, 'UNAUTHORIZED', message)
  }
}

export class ForbiddenError extends fixedAnswer(403, 'FORBIDDEN', 'this needs the admin role') {}

export class InvalidCredentialsError extends fixedAnswer(
  401,
  'INVALID_CREDENTIALS',
  'email or password is wrong',
) {}

/** A password the policy refuses (src/auth/password-policy.ts); the message names the rule. */
export class WeakPasswordError extends AppError {
  constructor(rule: string) {
    super(422, 'WEAK_PASSWORD', rule)
  }
}

/** A guest account has no password to change. */
export class NoPasswordError extends fixedAnswer(
  409,
  'NO_PASSWORD',
  'a guest account has no password to change: register an account instead',
) {}

export class EmailTakenError extends fixedAnswer(
  409,
  'EMAIL_TAKEN',
  'an account with this email exists already',
) {}

export class OutOfStockError extends AppError {
  constructor(readonly productId: number) {
    super(409, 'OUT_OF_STOCK', `product ${productId} does not have enough stock left`)
  }
}

/**
 * Another buyer changed the stock row between our read and our write (optimistic) or held its lock
 * for too long (pessimistic). Retryable: the stock use case retries it and a buyer only sees it when
 * the retry budget is spent while stock still remains.
 */
export class StockConflictError extends AppError {
  constructor(readonly productId: number) {
    super(409, 'STOCK_CONFLICT', `too many buyers at once for product ${productId}, try again`)
  }
}

export class CartEmptyError extends fixedAnswer(409, 'CART_EMPTY', 'the cart is empty') {}

export class PreconditionRequiredError extends fixedAnswer(
  428,
  'PRECONDITION_REQUIRED',
  'send If-Match with the ETag of the cart you last read',
) {}

export class PreconditionFailedError extends fixedAnswer(
  412,
  'PRECONDITION_FAILED',
  'the cart changed since you read it: read it again',
) {}

export class OrderExpiredError extends fixedAnswer(
  409,
  'ORDER_EXPIRED',
  'the reservation expired and its stock was released',
) {}

export class OrderNotPayableError extends AppError {
  constructor(status: string) {
    super(409, 'ORDER_NOT_PAYABLE', `the order is ${status}, only a reserved order can be paid`)
  }
}

export class OrderNotCancellableError extends AppError {
  constructor(status: string) {
    super(409, 'ORDER_NOT_CANCELLABLE', `the order is ${status}, only a reserved order can be cancelled`)
  }
}

export class PaymentDeclinedError extends fixedAnswer(
  402,
  'PAYMENT_DECLINED',
  'the payment provider declined the payment; the order stays reserved',
) {}

export class IdempotencyKeyInUseError extends fixedAnswer(
  409,
  'IDEMPOTENCY_KEY_IN_USE',
  'a request with this Idempotency-Key is still in progress',
) {}

export class IdempotencyKeyReusedError extends fixedAnswer(
  422,
  'IDEMPOTENCY_KEY_REUSED',
  'this Idempotency-Key was used with a different request',
) {}

export class InvalidIdempotencyKeyError extends fixedAnswer(
  400,
  'INVALID_IDEMPOTENCY_KEY',
  'Idempotency-Key must be 1 to 255 visible ASCII characters',
) {}

export class SoldOutError extends AppError {
  constructor(readonly saleId: number) {
    super(409, 'SOLD_OUT', `flash sale ${saleId} has no units left`)
  }
}

/**
 * Not a failure: Postgres already holds a finished response for this Idempotency-Key (found while
 * saving ours, so our transaction rolls back). The error handler answers with the stored response.
 */
export class IdempotentReplayError extends AppError {
  constructor(
    readonly storedStatus: number,
    readonly storedBody: unknown,
  ) {
    super(storedStatus, 'IDEMPOTENT_REPLAY', 'replaying the stored response')
  }
}

export class SaleNotActiveError extends AppError {
  constructor(saleId: number, status: 'upcoming' | 'ended') {
    super(
      409,
      'SALE_NOT_ACTIVE',
      `flash sale ${saleId} is ${status === 'upcoming' ? 'not open yet' : 'over'}`,
    )
  }
}

/**
 * A 409, not a 429: the buyer's own holding conflicts with the sale's rule, and waiting does not clear
 * it (a paid unit is held for good; a cancelled one keeps counting, docs/security.md). Every 429 of the
 * API means "slow down" and carries Retry-After.
 */
export class PerUserLimitError extends fixedAnswer(
  409,
  'PER_USER_LIMIT',
  'you hold as many units of this sale as one customer may',
) {}

export class RateLimitedError extends AppError {
  constructor(retryAfterMs: number) {
    super(429, 'RATE_LIMITED', 'too many requests; slow down')
    this.headers = { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) }
  }
}

/** The flash sale cannot take orders right now (its gate is being rebuilt, or a batch failed). */
export class SaleUnavailableError extends AppError {
  constructor(cause?: Error) {
    super(503, 'SALE_UNAVAILABLE', 'the sale cannot take orders this instant; try again in a moment')
    this.cause = cause
    this.headers = { 'retry-after': '1' }
  }
}

/** A server the request needs (Postgres, Redis) is away or saturated right now: retry shortly. */
export class DependencyUnavailableError extends AppError {
  constructor(cause?: unknown) {
    super(503, 'DEPENDENCY_UNAVAILABLE', 'a server this request needs is unavailable; try again in a moment')
    this.cause = cause
    this.headers = { 'retry-after': '1' }
  }
}

/**
 * The connection to Postgres broke while a COMMIT was on its way (the server died, the connection was
 * reset or terminated): the transaction may have committed or not, and this process cannot tell.
 * Thrown by src/db/transaction.ts. The client is told to retry with the same Idempotency-Key: the retry
 * asks Postgres for the saved answer before doing anything again.
 */
export class CommitOutcomeUnknownError extends AppError {
  /**
   * @param backendPid the server process of the broken session, when known: once it has ended, nothing
   * of the transaction still runs and its outcome is settled (committed or not).
   */
  constructor(
    cause: Error,
    readonly backendPid?: number,
  ) {
    super(
      503,
      'OUTCOME_UNKNOWN',
      'the database connection broke while this request was being committed; retry with the same Idempotency-Key to get its outcome',
    )
    this.cause = cause
    this.headers = { 'retry-after': '1' }
  }
}

/**
 * An earlier attempt with this Idempotency-Key ended in a 5xx, so it may have had its effect, and
 * Postgres, which would say, cannot be asked right now.
 */
export class IdempotencyOutcomeUnknownError extends AppError {
  constructor(cause?: Error) {
    super(
      503,
      'OUTCOME_UNKNOWN',
      'an earlier attempt with this Idempotency-Key may have gone through and the database cannot tell yet; try again in a moment',
    )
    this.cause = cause
    this.headers = { 'retry-after': '1' }
  }
}

export class InvalidSaleWindowError extends fixedAnswer(
  400,
  'INVALID_SALE_WINDOW',
  'endsAt must be after startsAt, and in the future',
) {}

export class RegisteredOnlyError extends AppError {
  constructor(saleId: number) {
    super(403, 'REGISTERED_ONLY', `flash sale ${saleId} is for registered accounts only: register or log in`)
  }
}

export class OrderTooLargeError extends AppError {
  constructor(maxCents: number) {
    super(422, 'ORDER_TOO_LARGE', `an order may total at most ${maxCents} cents: split the cart`)
  }
}

export class StockLimitError extends AppError {
  constructor(maxUnits: number) {
    super(422, 'STOCK_LIMIT', `a product may hold at most ${maxUnits} units in stock`)
  }
}

/** The worker holds as many live-event streams as it may; the client should retry later. */
export class TooManyStreamsError extends AppError {
  constructor() {
    super(503, 'TOO_MANY_STREAMS', 'too many live-event streams are open; try again in a moment')
    this.headers = { 'retry-after': '5' }
  }
}

/** A purchase of a sale with a waiting room, without a valid admission (or after its lease ended). */
export class NotAdmittedError extends AppError {
  constructor(saleId: number, why: 'missing' | 'invalid' | 'lapsed') {
    super(
      403,
      'NOT_ADMITTED',
      why === 'lapsed'
        ? `your turn in flash sale ${saleId}'s waiting room has passed`
        : `flash sale ${saleId} sells through a waiting room: join it (POST /api/sales/${saleId}/queue) and buy when admitted`,
    )
  }
}

/** Joining the waiting room of a sale that has none. */
export class NoWaitingRoomError extends AppError {
  constructor(saleId: number) {
    super(409, 'NO_WAITING_ROOM', `flash sale ${saleId} has no waiting room: buy directly`)
  }
}

/** Joining a waiting room that asks for a proof of work, without a valid one (GET .../queue/challenge). */
export class ProofRequiredError extends AppError {
  constructor(saleId: number) {
    super(
      403,
      'PROOF_REQUIRED',
      `flash sale ${saleId}'s waiting room asks for a proof of work: solve GET /api/sales/${saleId}/queue/challenge and send it as proof`,
    )
  }
}
