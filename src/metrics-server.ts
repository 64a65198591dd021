import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'

/**
 * Serves one process's metrics on a port of its own: `/metrics` (Prometheus text) for Prometheus,
 * `/metrics.json` for the jobs process, which merges every worker's numbers into one view.
 * `extra` adds routes (the jobs process adds the merged view); `streams` adds routes that answer on
 * their own and may keep the response open (the dashboard's event stream).
 */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
  extra: Record<string, () => Promise<{ type: string; body: string }>> = {},
  streams: Record<string, (request: IncomingMessage, response: ServerResponse) => void> = {},
): Promise<Server> {
  const routes: Record<string, () => Promise<{ type: string; body: string }>> = {
    '/metrics': async () => ({ type: registry.contentType, body: await registry.metrics() }),
    '/metrics.json': async () => ({
      type: 'application/json',
      body: JSON.stringify(await registry.getMetricsAsJSON()),
    }),
    ...extra,
  }
  const server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0]!
    const stream = streams[path]
    if (stream) {
      stream(request, response)
      return
    }
    const route = routes[path]
    if (!route) {
      response.writeHead(404).end()
      return
    }
    route().then(
      ({ type, body }) => response.writeHead(200, { 'content-type': type }).end(body),
      (err: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(err.message),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, resolve)
  })
  return server
}
