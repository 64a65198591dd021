// Is a series flat? A soak reports one value per minute (p99, heap, event-loop delay, pool waits, Redis
// memory) and asks whether it drifts. A least-squares line through the points gives the slope (change
// per minute) and how well a line explains them (r²). A series is flat when the drift the line predicts
// over the whole soak stays within a tolerance of the series' level: a leak shows as a steady slope
// with a good fit, noise as a small slope or a poor fit.

export interface LinearFit {
  slope: number
  intercept: number
  /** 1: the points lie on the line; 0: the line explains nothing of their spread. */
  r2: number
}

/** The least-squares line through (x, y) points; null for fewer than two distinct x. */
export function linearFit(points: readonly { x: number; y: number }[]): LinearFit | null {
  const n = points.length
  if (n < 2) return null
  const meanX = points.reduce((s, p) => s + p.x, 0) / n
  const meanY = points.reduce((s, p) => s + p.y, 0) / n
  let sxx = 0
  let sxy = 0
  let syy = 0
  for (const { x, y } of points) {
    sxx += (x - meanX) ** 2
    sxy += (x - meanX) * (y - meanY)
    syy += (y - meanY) ** 2
  }
  if (sxx === 0) return null
  const slope = sxy / sxx
  return { slope, intercept: meanY - slope * meanX, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy) }
}

export interface Trend extends LinearFit {
  mean: number
  /** slope × the soak's span: how far the line moves from the first minute to the last. */
  drift: number
  /** The drift the series may show and still count as flat. */
  allowed: number
  flat: boolean
}

/**
 * The trend of one value per minute. `tolerance` is the drift allowed as a share of the series' mean;
 * `floor` is the smallest level that share is taken of (a p99 of 2 ms may wander by 1 ms and still be flat).
 */
export function trendOf(values: readonly number[], tolerance: number, floor = 0): Trend | null {
  const fit = linearFit(values.map((y, x) => ({ x, y })))
  if (!fit) return null
  const mean = values.reduce((s, v) => s + v, 0) / values.length
  const drift = fit.slope * (values.length - 1)
  const allowed = tolerance * Math.max(Math.abs(mean), floor)
  return { ...fit, mean, drift, allowed, flat: Math.abs(drift) <= allowed }
}
