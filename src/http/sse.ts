import type { IncomingMessage, ServerResponse } from 'node:http'
import { TooManyStreamsError } from '../errors.js'

// Server-sent events, in one place for every stream of the project (the sales' live numbers in the API
// workers, the dashboard's feed in the jobs process): the headers, the heartbeat, writing an event,
// dropping a reader that falls behind, and letting go of a stream when its client leaves.

export interface EventStreamOptions {
  /** Each process holds at most this many streams: past it, `full` is true and a new one is refused. */
  maxStreams: number
  /** A comment line this often, so that idle proxies and browsers keep the connection. */
  heartbeatMs?: number
  /** `retry:` before the first event: how long a browser that lost the stream waits to come back. */
  retryMs?: number
}

export interface EventStream {
  /** Writes one event (`event:` and one `data:` line). */
  send(event: string, data: string): void
}

// A reader that reads slower than its stream is written is dropped once this much waits for it; its
// browser reconnects and starts again from the current numbers.
const MAX_UNREAD_BYTES = 1024 * 1024

/**
 * The open event streams of one process. Each holds a socket and listeners for as long as its client
 * likes: past `maxStreams` a process refuses new ones rather than slow down everything else it serves.
 */
export function createEventStreams(options: EventStreamOptions) {
  const open = new Set<ServerResponse>()

  /** Writes `text` unless the reader has fallen too far behind, in which case it is dropped. */
  function write(response: ServerResponse, text: string): void {
    if (response.writableLength > MAX_UNREAD_BYTES) response.destroy()
    else response.write(text)
  }

  return {
    /** Whether a new stream would be one too many. */
    get full(): boolean {
      return open.size >= options.maxStreams
    },

    get size(): number {
      return open.size
    },

    /**
     * Starts the event stream on a raw response; `onClose` runs once when the client goes (or the stream
     * is ended), to unsubscribe whatever feeds it.
     */
    open(request: IncomingMessage, response: ServerResponse, onClose: () => void): EventStream {
      response.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      })
      request.socket.setNoDelay(true)
      let prefix = options.retryMs === undefined ? '' : `retry: ${options.retryMs}\n`
      const heartbeat =
        options.heartbeatMs === undefined
          ? null
          : setInterval(() => write(response, ': heartbeat\n\n'), options.heartbeatMs)
      open.add(response)
      response.on('close', () => {
        if (heartbeat) clearInterval(heartbeat)
        open.delete(response)
        onClose()
      })
      return {
        send(event, data) {
          write(response, `${prefix}event: ${event}\ndata: ${data}\n\n`)
          prefix = ''
        },
      }
    },

    /** Refuses a stream on a raw response, as the API refuses one (TooManyStreamsError). */
    refuse(response: ServerResponse): void {
      const err = new TooManyStreamsError()
      response
        .writeHead(err.statusCode, { 'content-type': 'application/json', ...err.headers })
        .end(JSON.stringify({ code: err.code, message: err.message }))
    },

    /** Ends every open stream: a stopping process would otherwise wait for them forever. */
    closeAll(): void {
      for (const response of open) response.end()
    },
  }
}

export type EventStreams = ReturnType<typeof createEventStreams>
