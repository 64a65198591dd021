import { get, type IncomingHttpHeaders } from 'node:http'

export interface OpenStream {
  status: number
  headers: IncomingHttpHeaders
  /** The whole body, once the server ends the response (a refused stream's JSON answer). */
  body: Promise<string>
  /** What has arrived so far (an open stream's events). */
  received(): string
  /** Hangs up. */
  close(): void
}

/** Opens an event stream on a connection of its own (no keep-alive reuse), as a browser tab would. */
export function openStream(url: string): Promise<OpenStream> {
  return new Promise((resolve, reject) => {
    const request = get(url, { agent: false }, (response) => {
      let body = ''
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
      resolve({
        status: response.statusCode!,
        headers: response.headers,
        body: new Promise((done) => response.on('end', () => done(body))),
        received: () => body,
        close: () => request.destroy(),
      })
    })
    request.on('error', reject)
  })
}
