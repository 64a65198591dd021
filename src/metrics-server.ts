import { createServer, type Server } from 'node:http'
import type { Registry } from 'prom-client'

/**
 * Serves one process's metrics on a port of its own: `/metrics` (Prometheus text) for Prometheus,
 * `/metrics.json` for the jobs process, which merges every worker's numbers into one view.
 * `extra` adds routes (the jobs process adds the merged view).
 */
export async function startMetricsServer(
  registry: Registry,
  host: string,
  port: number,
  extra: Record<string, () => Promise<{ type: string; body: string }>> = {},
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
    const route = routes[(request.url ?? '').split('?')[0]!]
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
