// PM2 process file for Stampede. `npm run stack:up` uses it with PM2_HOME=<stack dir>/pm2. In production:
// `npm run build && pm2 start ecosystem.config.cjs`, with the settings of src/config.ts in the environment.
//
// It reads the compiled config (dist/src/config.js, through Node's require of ES modules), so PM2 and the
// app agree on every default. PM2 7 refuses to run .ts files on Node < 22.18: the app runs from dist/.
const path = require('node:path')
const { loadConfig } = require('./dist/src/config.js')

const config = loadConfig(process.env)
const stackDir = path.resolve(__dirname, config.STACK_DIR)
const logFile = (name) => path.join(stackDir, 'logs', name)

module.exports = {
  apps: [
    {
      name: 'api',
      script: path.join(__dirname, 'dist/src/server.js'),
      cwd: __dirname,
      // Each worker gets the environment of the `pm2 start` command (DATABASE_URL, PORT, ...): after
      // changing a setting, `pm2 reload ecosystem.config.cjs --update-env` (the stack restarts the workers).
      // Cluster mode: PM2 forks API_INSTANCES workers and sets NODE_APP_INSTANCE = 0..n-1 in each. Worker N
      // listens on PORT + N (and serves metrics on METRICS_PORT + N), so nginx balances over named upstreams
      // and a stuck worker shows up by its port, instead of sharing one port through the cluster master.
      exec_mode: 'cluster',
      instances: config.API_INSTANCES,
      instance_var: 'NODE_APP_INSTANCE',
      // The server calls process.send('ready') once it listens; PM2 waits for it (at most listen_timeout)
      // before it counts a worker as online, so a reload replaces workers only with ones that answer.
      wait_ready: true,
      listen_timeout: 10_000,
      // A stopping worker drains for SHUTDOWN_DRAIN_MS, then closes its pools: give it that plus a margin
      // before PM2 sends SIGKILL, or in-flight purchases are cut off half-way.
      kill_timeout: config.SHUTDOWN_DRAIN_MS + 5_000,
      max_memory_restart: '512M',
      // Extra node flags for the workers, for profiling a run: API_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"
      // (a profile per worker is written when it stops; see docs/benchmarks.md).
      node_args: process.env.API_NODE_ARGS || [],
      // A worker that crashes at start (Postgres down) is restarted after 100 ms, 150 ms, ... up to 15 s.
      exp_backoff_restart_delay: 100,
      merge_logs: true,
      out_file: logFile('api.out.log'),
      error_file: logFile('api.err.log'),
    },
    {
      // Background work no request waits for: the reservation sweeper, the flash-sale reconciler, and the
      // merged metrics view (src/jobs.ts). One fork process; every job is safe if two ever run at once.
      name: 'jobs',
      script: path.join(__dirname, 'dist/src/jobs.js'),
      cwd: __dirname,
      exec_mode: 'fork',
      instances: 1,
      wait_ready: true,
      listen_timeout: 10_000,
      // A round of jobs ends within a second of SIGINT; the margin covers a slow sweep transaction.
      kill_timeout: 5_000,
      max_memory_restart: '256M',
      exp_backoff_restart_delay: 100,
      out_file: logFile('jobs.out.log'),
      error_file: logFile('jobs.err.log'),
    },
  ],
}
