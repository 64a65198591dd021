import type { IncomingMessage, ServerResponse } from 'node:http'
import { createEventStreams } from '../http/sse.js'
import type { DashboardFeed } from './dashboard-feed.js'

/**
 * The dashboard's server-sent event stream: `event: history` once (every kept sample, oldest first),
 * then `event: sample` with each new one. Viewers only receive what the feed computed; none of them
 * costs a computation. Past `maxStreams` open streams a new viewer gets a 503, like the sale streams.
 */
export function createDashboardStreams(feed: DashboardFeed, maxStreams: number) {
  // `retry`: a browser that lost the stream tries again after 2 s.
  const streams = createEventStreams({ maxStreams, retryMs: 2000 })

  return {
    handle(request: IncomingMessage, response: ServerResponse): void {
      if (streams.full) return streams.refuse(response)
      let unsubscribe = () => {}
      const stream = streams.open(request, response, () => unsubscribe())
      stream.send('history', `[${feed.history().join(',')}]`)
      unsubscribe = feed.subscribe((sample) => stream.send('sample', sample))
    },
    /** How many viewers are connected. */
    get size(): number {
      return streams.size
    },
    /** Ends every open stream (a stopping process would otherwise wait for them forever). */
    close(): void {
      streams.closeAll()
    },
  }
}
