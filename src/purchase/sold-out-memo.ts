/**
 * Remembers, per worker, that a sale was found sold out, for `ttlMs`: by the gate (./gate/) or by
 * Postgres (./postgres/). Most of a stampede's requests arrive after the last unit is gone; with the
 * memo a worker answers them without asking Redis or opening a transaction. A unit released
 * meanwhile (a cancelled order) is offered again at most `ttlMs` later; like a sale page's count, the
 * answer may be that old, and it can never oversell. Pure: no I/O, no metrics.
 */
export function createSoldOutMemo(ttlMs: number, now: () => number = Date.now) {
  const soldOutUntil = new Map<number, number>()
  return {
    remember(saleId: number): void {
      soldOutUntil.set(saleId, now() + ttlMs)
    },
    knows(saleId: number): boolean {
      return (soldOutUntil.get(saleId) ?? 0) > now()
    },
  }
}
