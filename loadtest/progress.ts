// A one-line progress bar on a terminal ("stampede [#####.....] 4.0/10 s  12,345 answers ..."), redrawn
// four times a second; without a terminal (CI, a pipe) a plain line every 5 seconds instead.

export interface Progress {
  start(): void
  stop(): void
}

export function createProgress(title: string, totalMs: number, status: () => string): Progress {
  const tty = process.stdout.isTTY === true
  const width = 24
  let timer: NodeJS.Timeout | undefined
  let started = 0

  const line = () => {
    const elapsed = Math.min(Date.now() - started, totalMs)
    const filled = Math.round((elapsed / totalMs) * width)
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`
    return `${title} [${bar}] ${(elapsed / 1000).toFixed(1)}/${(totalMs / 1000).toFixed(0)} s  ${status()}`
  }
  const draw = () => {
    const text = line()
    const columns = process.stdout.columns || 120
    process.stdout.write(`\r${text.slice(0, columns - 1).padEnd(columns - 1)}`)
  }

  return {
    start() {
      started = Date.now()
      if (tty) {
        draw()
        timer = setInterval(draw, 250)
      } else {
        timer = setInterval(() => console.log(line()), 5000)
      }
    },
    stop() {
      if (timer) clearInterval(timer)
      timer = undefined
      if (tty && started) {
        draw()
        process.stdout.write('\n')
      }
    },
  }
}
