import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { NGINX_TEMPLATE } from '../../scripts/stack/nginx.js'
import { isRoot, portAnswers, run, waitFor } from '../../scripts/stack/process.js'
import type { Lab, LabContext } from './lab.js'

// Lab 6, POST retry: nginx in front of two upstreams, where the first one takes the purchase to a real
// worker, lets the app handle it (the order commits), then closes the socket without an answer: a
// worker that dies between its COMMIT and its response. Whether nginx sends the same POST to the second
// upstream is decided by one directive, proxy_next_upstream. The lab renders an nginx config of its
// own (port: the labs' nginx + 10, files under <labs stack>/nginx-post-retry) three times:
//   broken: proxy_next_upstream with non_idempotent, purchases without an Idempotency-Key;
//   fixed:  the committed nginx.conf's proxy_next_upstream line, same purchases;
//   and with non_idempotent again, but every purchase carrying an Idempotency-Key.

const BUYERS = 5

/** The committed nginx.conf's own proxy_next_upstream directive, word for word. */
function committedNextUpstream(): string {
  const line = /^\s*(proxy_next_upstream [^;]+;)/m.exec(readFileSync(NGINX_TEMPLATE, 'utf8'))?.[1]
  if (!line) throw new Error('nginx.conf has no proxy_next_upstream directive')
  return line
}

/**
 * A TCP proxy to one worker that forwards the request and the worker's whole answer into the void: once
 * the worker has answered (and closed, as nginx asked for no keepalive here), it closes nginx's side
 * without a byte. nginx sees "upstream prematurely closed connection".
 */
function answerSwallower(worker: URL): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    sockets.add(client)
    const upstream = net.connect(Number(worker.port), worker.hostname)
    sockets.add(upstream)
    client.pipe(upstream)
    upstream.on('data', () => undefined)
    upstream.on('end', () => client.destroy())
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
    client.on('close', () => upstream.destroy())
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close: () => {
          for (const s of sockets) s.destroy()
          return new Promise((done) => server.close(() => done()))
        },
      })
    })
  })
}

function labNginxConf(
  dir: string,
  port: number,
  swallower: number,
  worker: URL,
  nextUpstream: string,
): string {
  return `# Rendered by loadtest/labs/post-retry.ts: a lab-only nginx, never the stack's.
${isRoot() ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
events { worker_connections 64; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/temp/client_body;
    proxy_temp_path ${dir}/temp/proxy;
    fastcgi_temp_path ${dir}/temp/fastcgi;
    uwsgi_temp_path ${dir}/temp/uwsgi;
    scgi_temp_path ${dir}/temp/scgi;
    upstream lab_api {
        # The upstream that handles the purchase, then closes without an answer; the real worker after it.
        server 127.0.0.1:${swallower} max_fails=0;
        server ${worker.host} backup;
    }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://lab_api;
            proxy_set_header Host $host;
            ${nextUpstream}
            proxy_next_upstream_tries 2;
        }
    }
}
`
}

interface Round {
  statuses: Record<string, number>
  orders: number
}

async function purchaseRound(
  ctx: LabContext,
  nginxUrl: string,
  saleId: number,
  withKeys: boolean,
): Promise<Round> {
  const users = await createLoadTestUsers(ctx.target.db, ctx.target.config, BUYERS)
  const statuses: Record<string, number> = {}
  await Promise.all(
    users.map(async (user) => {
      const response = await fetch(`${nginxUrl}/api/sales/${saleId}/purchase`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${user.token}`,
          'content-type': 'application/json',
          ...(withKeys ? { 'idempotency-key': randomUUID() } : {}),
        },
        body: '{"quantity":1}',
        signal: AbortSignal.timeout(15_000),
      })
      await response.text()
      const answer = `${response.status}${response.headers.get('idempotent-replayed') === 'true' ? ' (replayed)' : ''}`
      statuses[answer] = (statuses[answer] ?? 0) + 1
    }),
  )
  // One order per buyer is right; more is a purchase that ran twice.
  const { rows } = await ctx.target.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM orders WHERE sale_id = $1 AND user_id = ANY($2::uuid[])`,
    [saleId, users.map((u) => u.id)],
  )
  return { statuses, orders: rows[0]!.n }
}

export const postRetry: Lab = {
  name: 'post-retry',
  title:
    'nginx retrying a POST (non_idempotent) turns one purchase into two orders; the committed config does not',
  async run(ctx) {
    const dir = path.join(ctx.options.dir, 'nginx-post-retry')
    for (const temp of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
      mkdirSync(path.join(dir, 'temp', temp), { recursive: true })
    const conf = path.join(dir, 'nginx.conf')
    writeFileSync(path.join(dir, 'error.log'), '')
    const port = ctx.options.ports.nginx + 10
    const nginxUrl = `http://127.0.0.1:${port}`
    const worker = new URL(ctx.urls.workers[0]!)
    const swallower = await answerSwallower(worker)
    const productId = await ctx.admin.loadTestProduct(ctx.target.db)
    // A per-user limit of 1 would refuse the second order and hide the retry: the lab allows 5.
    const sale = await ctx.admin.createSale({
      productId,
      units: 100,
      perUserLimit: 5,
      priceCents: 999,
      openSeconds: 600,
    })
    let running = false
    const nginx = async (nextUpstream: string) => {
      writeFileSync(conf, labNginxConf(dir, port, swallower.port, worker, nextUpstream))
      const args = ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')]
      if (running) await run('nginx', [...args, '-s', 'reload'])
      else await run('nginx', args)
      running = true
      await waitFor('the lab nginx', () => portAnswers(port), 10_000)
      // A reload's old worker may still answer a moment: give the new configuration time to take over.
      await new Promise((resolve) => setTimeout(resolve, 500))
      ctx.log(`lab nginx on ${nginxUrl}: ${nextUpstream}`)
    }
    const describe = (r: Round) =>
      `${BUYERS} purchases -> answers ${Object.entries(r.statuses)
        .map(([status, n]) => `${n} x ${status}`)
        .join(', ')}; ${r.orders} orders`
    try {
      const retrying = 'proxy_next_upstream error timeout http_502 http_503 non_idempotent;'
      await nginx(retrying)
      const broken = await purchaseRound(ctx, nginxUrl, sale.id, false)
      const seen = readFileSync(path.join(dir, 'error.log'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('prematurely closed'))
      ctx.log(
        `nginx error.log (${seen.length} like it): ${seen.at(-1)?.replace(/^.*\[error\] /, '') ?? 'none'}`,
      )
      const committed = committedNextUpstream()
      await nginx(committed)
      const fixed = await purchaseRound(ctx, nginxUrl, sale.id, false)
      await nginx(retrying)
      const keyed = await purchaseRound(ctx, nginxUrl, sale.id, true)
      ctx.log(`non_idempotent, each purchase with an Idempotency-Key: ${describe(keyed)}`)
      return {
        broken: {
          line: `non_idempotent, no Idempotency-Key: ${describe(broken)}`,
          asExpected: broken.orders > BUYERS,
        },
        fixed: {
          line: `committed nginx.conf (${committed}), no key: ${describe(fixed)}; with keys and non_idempotent: ${keyed.orders} orders`,
          asExpected: fixed.orders === BUYERS && keyed.orders === BUYERS,
        },
      }
    } finally {
      if (running)
        await run('nginx', ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log'), '-s', 'stop']).catch(
          () => undefined,
        )
      await swallower.close()
    }
  },
}
