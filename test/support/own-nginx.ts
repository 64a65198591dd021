import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ensureNginx, nginxLimitsFromEnv, stopNginx, type NginxSetup } from '../../scripts/stack/nginx.js'
import { freePort } from './ports.js'

/**
 * An nginx of the test's own, from the committed nginx.conf with its default limits, on free ports and
 * in a folder of its own, in front of `upstreams` ("host:port" of workers). `stop` ends it and removes
 * its folder.
 */
export async function startOwnNginx(
  upstreams: string[],
  jobsMetrics = '127.0.0.1:9',
): Promise<{ setup: NginxSetup; url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-own-nginx-'))
  const setup: NginxSetup = {
    stackDir: dir,
    port: await freePort(),
    adminPort: await freePort(),
    upstreams,
    jobsMetrics,
    limits: nginxLimitsFromEnv({}),
  }
  const stop = async () => {
    await stopNginx(setup, () => {})
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await ensureNginx(setup, () => {})
  } catch (error) {
    await stop()
    throw error
  }
  return { setup, url: `http://127.0.0.1:${setup.port}`, stop }
}
