import type { IncomingMessage, ServerResponse } from 'node:http'
import type { DashboardFeed } from './dashboard-feed.js'

// A viewer that reads slower than the feed writes is dropped once this much waits for it; its browser
// reconnects and starts again from the history.
const MAX_UNREAD_BYTES = 1024 * 1024

/**
 * The dashboard's server-sent event stream: `event: history` once (every kept sample, oldest first),
 * then `event: sample` with each new one. Viewers only receive what the feed computed; none of them
 * costs a computation. Past `maxStreams` open streams a new viewer gets a 503, like the sale streams.
 */
export function createDashboardStreams(feed: DashboardFeed, maxStreams: number) {
  const open = new Set<ServerResponse>()

  return {
    handle(request: IncomingMessage, response: ServerResponse): void {
      if (open.size >= maxStreams) {
        response.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' }).end(
          JSON.stringify({
            code: 'TOO_MANY_STREAMS',
            message: 'too many live-event streams are open; try again in a moment',
          }),
        )
        return
      }
      response.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      })
      // `retry`: a browser that lost the stream tries again after 2 s.
      response.write(`retry: 2000\nevent: history\ndata: [${feed.history().join(',')}]\n\n`)
      const unsubscribe = feed.subscribe((sample) => {
        if (response.writableLength > MAX_UNREAD_BYTES) response.destroy()
        else response.write(`event: sample\ndata: ${sample}\n\n`)
      })
      open.add(response)
      request.socket.setNoDelay(true)
      response.on('close', () => {
        unsubscribe()
        open.delete(response)
      })
    },
    /** How many viewers are connected. */
    get size(): number {
      return open.size
    },
    /** Ends every open stream (a stopping process would otherwise wait for them forever). */
    close(): void {
      for (const response of open) response.end()
    },
  }
}
