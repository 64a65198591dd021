import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { NGINX_TEMPLATE } from '../../scripts/stack/nginx.js'

// What test/nginx-edges.test.ts cannot make nginx answer from outside (408: a slow client is disconnected;
// 411; 495-497 need TLS; 500; 504 needs a worker that hangs for proxy_read_timeout), read from the
// committed configuration: every status nginx can make has a JSON answer on both servers.

const conf = readFileSync(NGINX_TEMPLATE, 'utf8')
const httpLevel = conf.slice(0, conf.indexOf('    server {'))
// The servers clients reach (public and admin); the edge's own server on a Unix socket answers only edge.lua.
const servers = conf
  .split(/^ {4}server \{$/m)
  .slice(1)
  .filter((server) => !/^\s*listen unix:/m.test(server))

/** `error_page 400 404 =503 /x;` lines as [statuses, the status sent, target]. */
const errorPages = [...conf.matchAll(/^\s*error_page\s+([^;]+);/gm)].map((m) => {
  const words = m[1]!.split(/\s+/)
  const target = words.pop()!
  const overwrite = words.find((w) => w.startsWith('='))
  const statuses = words.filter((w) => /^\d{3}$/.test(w)).map(Number)
  return { statuses, sent: overwrite ? Number(overwrite.slice(1)) : undefined, target }
})

/** The keys of `map $status $<name> { ... }`. */
function mapKeys(name: string): number[] {
  const block = new RegExp(`map \\$status \\$${name} \\{([^}]*)\\}`).exec(conf)
  expect(block, name).not.toBeNull()
  return [...block![1]!.matchAll(/^\s*(\d{3})\s/gm)].map((m) => Number(m[1]))
}

const EVERY_STATUS = [
  400, 403, 404, 405, 408, 411, 412, 413, 414, 416, 429, 494, 495, 496, 497, 500, 501, 502, 503, 504, 505,
]

describe('nginx.conf: the answers nginx makes itself', () => {
  it('when nginx makes any status itself, then an error_page at the http level (both servers) sends it to the JSON location, with a code and a message for the status sent', () => {
    const codes = mapKeys('nginx_error_code')
    const messages = mapKeys('nginx_error_message')
    for (const status of EVERY_STATUS) {
      const page = errorPages.find((p) => p.statuses.includes(status))
      expect(page, `error_page for ${status}`).toBeDefined()
      expect(page!.target).toBe('/_nginx/error')
      const sent = page!.sent ?? status
      expect(codes, `code for ${status} (sent as ${sent})`).toContain(sent)
      expect(messages, `message for ${status} (sent as ${sent})`).toContain(sent)
    }
    // A server with an error_page of its own would drop the inherited ones.
    expect(errorPages).toHaveLength([...httpLevel.matchAll(/^\s*error_page\s/gm)].length)
    expect(mapKeys('nginx_error_retry_after').sort()).toEqual([429, 503])
  })

  it('when the JSON location answers, on either server, then it is application/json whatever the extension, and sets each security header once', () => {
    expect(servers).toHaveLength(2)
    for (const server of servers) {
      const location = /location = \/_nginx\/error \{([\s\S]*?)\n {8}\}/.exec(server)
      expect(location, server.slice(0, 80)).not.toBeNull()
      const body = location![1]!
      expect(body).toContain('internal;')
      expect(body).toMatch(/types \{ \}/)
      expect(body).toContain('default_type application/json;')
      for (const header of [
        'Retry-After',
        'X-Content-Type-Options',
        'X-Frame-Options',
        'Referrer-Policy',
        'Content-Security-Policy',
      ])
        expect(body.match(new RegExp(`add_header ${header} `, 'g')), header).toHaveLength(1)
      expect(body).toMatch(/return 200 '\{"code":"\$nginx_error_code","message":"\$nginx_error_message"\}';/)
    }
  })

  it('when nginx passes a request on, then X-Forwarded-For is the address nginx saw and X-Stampede-Edge says which server, whatever the client sent', () => {
    expect(httpLevel).toMatch(/^\s*proxy_set_header X-Forwarded-For \$remote_addr;$/m)
    expect(httpLevel).toMatch(/^\s*proxy_set_header X-Stampede-Edge \$stampede_edge;$/m)
    expect(conf).toMatch(
      /map \$server_port \$stampede_edge \{\s*\$\{NGINX_ADMIN_PORT\} admin;\s*default public;\s*\}/,
    )
    // A location with a proxy_set_header of its own would drop the inherited ones.
    expect(servers.join('')).not.toMatch(/proxy_set_header/)
  })
})
