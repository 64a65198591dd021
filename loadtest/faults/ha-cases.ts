import { setTimeout as sleep } from 'node:timers/promises'
import { httpText, waitFor } from '../../scripts/stack/process.js'
import { heal, partition } from '../../scripts/stack/ha/netns.js'
import { allEtcdHealthy, patroniLeader, patroniWhole } from '../../scripts/stack/ha/postgres-ha.js'
import {
  MIN_REPLICAS_MAX_LAG_S,
  redisPrimary,
  redisRole,
  withClient,
} from '../../scripts/stack/ha/redis-ha.js'
import { haHost, HA_PORTS, hostsWithRole, type HaHost } from '../../scripts/stack/ha/topology.js'
import { parsePrometheusText, sumOf } from '../prometheus.js'
import type { Check } from '../verify.js'
import { answersStartingWith, type Observation } from './campaign.js'
import type { HaCaseContext, HaFaultCase } from './ha-campaign.js'

// The HA profile's failover cases, in the order the campaign runs them. Each kills or cuts off one
// server (or host) of scripts/stack/ha/ while a flash sale runs through nginx, then restore() brings it
// back into its cluster so the next case starts whole. docs/scaling.md explains the engines.

const check = (name: string, ok: boolean, detail: string, invariant: Check['invariant'] = 'I3'): Check => ({
  invariant,
  name,
  ok,
  detail,
})

const kill = (pid: number | undefined, what: string) => {
  if (pid === undefined) throw new Error(`${what} is not running: nothing to kill`)
  process.kill(pid, 'SIGKILL')
  return pid
}

/** Waits for `holds` and returns how long it took since `since` (the fault; by default, now), in ms. */
async function timeUntil(
  what: string,
  holds: () => Promise<boolean>,
  { since = Date.now(), timeoutMs = 60_000 }: { since?: number; timeoutMs?: number } = {},
) {
  await waitFor(what, holds, timeoutMs)
  return Date.now() - since
}

/** The host the Redis Sentinels name as primary now. */
async function primaryNow(): Promise<HaHost> {
  const primary = await redisPrimary()
  if (!primary) throw new Error('no Sentinel names a Redis primary')
  return primary
}

/** The host a case noted by name (the victim of its fault), if it got that far. */
const notedHost = (name: string | number | undefined) => (typeof name === 'string' ? haHost(name) : undefined)

/** A Redis node back as a replica whose link to its primary is up. */
async function isSyncedReplica(host: HaHost): Promise<boolean> {
  const info = await withClient(host, HA_PORTS.redis, (c) => c.info('replication'))
  return info !== undefined && /role:slave/.test(info) && /master_link_status:up/.test(info)
}

/** The gate's Redis run id (the server it was built on), read on the primary the Sentinels name. */
async function gateRunId(ctx: HaCaseContext): Promise<string | null> {
  const primary = await primaryNow()
  const fields = await withClient(primary, HA_PORTS.redis, (c) => c.hgetall(`sale:{${ctx.sale!.id}}:gate`))
  return fields?.run_id ?? null
}

const fiveXx = (seen: Observation) => answersStartingWith(seen.load.answers, '5')

export const HA_CASES: HaFaultCase[] = [
  {
    name: 'patroni-leader-kill',
    title: "The Patroni leader's Postgres and Patroni SIGKILLed",
    fault:
      'At a random moment 4-6 s into the sale, the leader node loses both its Patroni and its postmaster to SIGKILL, as in a machine that dies. After the load, its Patroni is started again and rejoins as a replica (pg_rewind).',
    promise:
      "Patroni's leader key in etcd expires (ttl 10 s) and the synchronous standby, which has every acknowledged commit, is promoted; HAProxy moves the read-write port to it within two checks. Purchases meanwhile get 503s, never a 500 or a lost order: every 201 a buyer saw is an order on the new leader.",
    limits:
      "The sale stops selling for about the key's TTL (up to 10 s) plus HAProxy's checks (2 s) and the pools' reconnects. A purchase whose COMMIT was in flight when the leader died is answered 503 OUTCOME_UNKNOWN; a retry with its Idempotency-Key finds the order if it committed.",
    async inject(ctx, notes) {
      await ctx.waitForRandomMoment(4000, 6000)
      const leader = await patroniLeader()
      if (!leader) throw new Error('no Patroni leader to kill')
      const host = haHost(leader.name)
      notes.oldLeader = host.name
      const patroni = kill(ctx.handles.patroniPid(host), `patroni on ${host.name}`)
      const postmaster = kill(ctx.handles.postmasterPid(host), `postgres on ${host.name}`)
      const at = Date.now()
      ctx.fault(`SIGKILL patroni (${patroni}) and postgres (${postmaster}) on ${host.name}, the leader`)
      notes.newLeaderAfterMs = await timeUntil(
        'a new Patroni leader',
        async () => {
          const now = await patroniLeader()
          if (now && now.name !== host.name && now.state === 'running') notes.newLeader = now.name
          return notes.newLeader !== undefined
        },
        { since: at },
      )
      ctx.note(`${notes.newLeader} leads`)
    },
    async restore(ctx, notes) {
      const old = notedHost(notes.oldLeader)
      if (old && ctx.handles.patroniPid(old) === undefined) await ctx.handles.startPatroni(old, ctx.log)
      notes.rejoinedAfterMs = await timeUntil('the old leader to stream as a replica', patroniWhole, {
        timeoutMs: 120_000,
      })
    },
    check(_ctx, seen) {
      return [
        check(
          'a replica took over the leader key',
          seen.notes.newLeader !== undefined && seen.notes.newLeader !== seen.notes.oldLeader,
          `${seen.notes.oldLeader} killed, ${seen.notes.newLeader} leads ${seen.notes.newLeaderAfterMs} ms later`,
        ),
      ]
    },
  },
  {
    name: 'redis-primary-kill',
    title: 'The Redis primary SIGKILLed; Sentinel promotes a replica',
    fault:
      'At a random moment 4-6 s into the sale, the redis-server the Sentinels call primary gets SIGKILL. After the load it is started again and the Sentinels make it a replica of the new primary.',
    promise:
      "Two of the three Sentinels agree it is down after 2 s and promote a replica; the app's Redis clients follow the Sentinels to it. The promoted replica may lack the last gate writes, so every gate is rebuilt from Postgres before it admits again (its run id fence no longer matches), and drift returns to 0. A buyer who retries with the same Idempotency-Key after the failover lost it gets the order back, never a refusal (sold out, the per-user limit).",
    limits:
      'Purchases get 503s for the detection time plus the election (about 3-5 s). Replication is asynchronous: gate writes the old primary acknowledged but had not sent are lost, which is why the gate is rebuilt from Postgres rather than trusted; idempotency locks and records written in that window are lost too. Postgres holds the backstop copy of each key: after the run every key with a saved order is sent again, twice, and must answer that order (201, replayed), never a refusal or a second order; keys without a saved order are not judged.',
    // The keys whose Redis records the failover lost: Postgres' copy must answer each of them.
    resendEveryKey: true,
    async inject(ctx, notes) {
      await ctx.waitForRandomMoment(4000, 6000)
      const primary = await primaryNow()
      notes.oldPrimary = primary.name
      notes.gateRunIdBefore = (await gateRunId(ctx)) ?? 'none'
      const pid = kill(ctx.handles.redisPid(primary), `redis on ${primary.name}`)
      const at = Date.now()
      ctx.fault(`SIGKILL redis-server (${pid}) on ${primary.name}, the primary`)
      notes.newPrimaryAfterMs = await timeUntil(
        'the Sentinels to promote a replica',
        async () => {
          const now = await redisPrimary()
          if (now && now.name !== primary.name && (await redisRole(now)) === 'master')
            notes.newPrimary = now.name
          return notes.newPrimary !== undefined
        },
        { since: at },
      )
      ctx.note(`sentinels promoted ${notes.newPrimary}`)
    },
    async restore(ctx, notes) {
      const old = notedHost(notes.oldPrimary)
      if (!old) return
      if (ctx.handles.redisPid(old) === undefined) await ctx.handles.startRedis(old, ctx.log)
      notes.gateRunIdAfter = (await gateRunId(ctx)) ?? 'none'
      notes.rejoinedAfterMs = await timeUntil('the old primary to replicate the new one', () =>
        isSyncedReplica(old),
      )
    },
    check(_ctx, seen) {
      const { oldPrimary, newPrimary, gateRunIdBefore, gateRunIdAfter } = seen.notes
      return [
        check(
          'the Sentinels promoted a replica',
          newPrimary !== undefined && newPrimary !== oldPrimary,
          `${oldPrimary} killed, ${newPrimary} primary ${seen.notes.newPrimaryAfterMs} ms later`,
        ),
        check(
          'the gate was rebuilt on the new primary (its run id fence changed)',
          gateRunIdAfter !== undefined && gateRunIdAfter !== 'none' && gateRunIdAfter !== gateRunIdBefore,
          `gate built under ${String(gateRunIdBefore).slice(0, 8)} before, ${String(gateRunIdAfter).slice(0, 8)} after`,
        ),
      ]
    },
  },
  {
    name: 'redis-split-brain',
    title: 'The Redis primary cut off from the Sentinels and the app',
    fault:
      "At a random moment 4-6 s into the sale, every packet between the primary's host and the rest of the network is dropped (iptables inside its namespace) for 12 s; then the partition heals.",
    promise: `The majority side (two Sentinels, two replicas) promotes a replica and the app follows it. The old primary, still running and still believing it is primary, refuses writes once it has heard from no replica for ${MIN_REPLICAS_MAX_LAG_S} s (min-replicas-to-write 1): no client that can still reach it could sell from its gate. When the partition heals, the Sentinels make it a replica and its stale data is replaced.`,
    limits: `For up to ${MIN_REPLICAS_MAX_LAG_S} s the old primary still accepts writes from whoever can reach it (here nobody can: the app is on the other side). Those writes are lost when it rejoins. Commands the app sent to it just before the cut wait for the command timeout (1 s) and answer 503.`,
    async inject(ctx, notes) {
      await ctx.waitForRandomMoment(4000, 6000)
      const primary = await primaryNow()
      notes.oldPrimary = primary.name
      await partition(primary)
      const at = Date.now()
      ctx.fault(`${primary.name} (the primary) cut off from every other host`)
      // Asked from inside the old primary's own host: the only place that can still reach it.
      const refused = timeUntil(
        'the cut-off primary to refuse writes',
        async () => {
          const answer = await ctx.handles.runIn(
            primary,
            'redis-cli',
            ['-h', primary.address, '-p', String(HA_PORTS.redis), 'SET', 'stampede:split-brain-probe', '1'],
            { check: false },
          )
          return /NOREPLICAS/.test(answer.stdout + answer.stderr)
        },
        { since: at, timeoutMs: 30_000 },
      )
      const promoted = timeUntil(
        'the majority to promote a replica',
        async () => {
          const now = await redisPrimary()
          if (now && now.name !== primary.name) notes.newPrimary = now.name
          return notes.newPrimary !== undefined
        },
        { since: at },
      )
      notes.oldPrimaryRefusesWritesAfterMs = await refused
      ctx.note(`${primary.name} refuses writes (NOREPLICAS)`)
      notes.newPrimaryAfterMs = await promoted
      ctx.note(`sentinels promoted ${notes.newPrimary}`)
      await sleep(Math.max(0, 12_000 - (Date.now() - at)))
      await heal(primary)
      ctx.note(`partition of ${primary.name} healed`)
    },
    async restore(ctx, notes) {
      const old = notedHost(notes.oldPrimary)
      if (!old) return
      await heal(old)
      notes.rejoinedAfterMs = await timeUntil('the old primary to become a replica', () =>
        isSyncedReplica(old),
      )
    },
    check(_ctx, seen) {
      const { oldPrimary, newPrimary } = seen.notes
      return [
        check(
          'the majority promoted a replica',
          newPrimary !== undefined && newPrimary !== oldPrimary,
          `${oldPrimary} cut off, ${newPrimary} primary ${seen.notes.newPrimaryAfterMs} ms later`,
        ),
        check(
          'the cut-off primary refused writes (NOREPLICAS) while it was cut off',
          typeof seen.notes.oldPrimaryRefusesWritesAfterMs === 'number',
          `refused ${seen.notes.oldPrimaryRefusesWritesAfterMs} ms after the cut (min-replicas-max-lag ${MIN_REPLICAS_MAX_LAG_S} s)`,
        ),
      ]
    },
  },
  {
    name: 'app-partition',
    title: 'One app host cut off from nginx',
    fault:
      'At a random moment 4-6 s into the sale, one app host (chosen by the seed) drops every packet to and from the edge host for 10 s; it still reaches Postgres and Redis. Then the partition heals.',
    promise:
      "nginx's passive health checks take the host out after two failed connections (max_fails=2), and the other two hosts sell on. Only requests already on the cut-off host fail (nginx answers them 503 when its read timeout ends); after the heal the host gets requests again.",
    limits:
      "A request in flight on the cut-off host waits for nginx's 10 s proxy_read_timeout; a purchase is never retried on another host (it may have committed), so its buyer gets a 503 and retries with the Idempotency-Key. Requests that start while nginx still counts the host up wait for the 2 s connect timeout, then go to another host.",
    load: { durationSeconds: 34 },
    async inject(ctx, notes) {
      await ctx.waitForRandomMoment(4000, 6000)
      const apps = hostsWithRole('app')
      const host = apps[Math.floor(ctx.random() * apps.length)]!
      notes.cutOff = host.name
      notes.requestsBefore = await workerRequests(host)
      await partition(host, [haHost('edge').address])
      ctx.fault(`${host.name} cut off from nginx (edge)`)
      await sleep(10_000)
      await heal(host)
      ctx.note(`partition of ${host.name} healed`)
      const healedCount = await workerRequests(host)
      await sleep(6_000)
      notes.requestsAfterHeal = (await workerRequests(host)) - healedCount
    },
    async restore(_ctx, notes) {
      const host = notedHost(notes.cutOff)
      if (host) await heal(host)
    },
    check(ctx, seen) {
      const failed = fiveXx(seen) + seen.load.errors
      return [
        check(
          'failures stay within the requests in flight on the cut-off host',
          failed <= ctx.load.connections,
          `${failed} failed requests (bound: ${ctx.load.connections}, every connection once)`,
        ),
        check(
          'the host serves again after the heal',
          Number(seen.notes.requestsAfterHeal) > 0,
          `${seen.notes.requestsAfterHeal} requests answered by ${seen.notes.cutOff} in the 6 s after the heal`,
        ),
      ]
    },
  },
  {
    name: 'etcd-member-kill',
    title: 'One etcd member SIGKILLed',
    fault:
      'At a random moment 4-6 s into the sale, one of the three etcd members (chosen by the seed) gets SIGKILL; 10 s later it is started again from its data directory and rejoins.',
    promise:
      'Two members of three are a quorum: etcd keeps answering, Patroni keeps renewing the leader key, and nothing else notices. No failover, no 5xx.',
    limits:
      'A second member lost at the same time would leave no quorum: Patroni then cannot renew the key and, after retry_timeout, the leader demotes itself (read-only, purchases 503) rather than risk two primaries. That is the price of never having two.',
    async inject(ctx, notes) {
      await ctx.waitForRandomMoment(4000, 6000)
      const members = hostsWithRole('postgres')
      const host = members[Math.floor(ctx.random() * members.length)]!
      notes.killed = host.name
      notes.leaderBefore = (await patroniLeader())?.name ?? 'none'
      const pid = kill(ctx.handles.etcdPid(host), `etcd on ${host.name}`)
      ctx.fault(`SIGKILL etcd (${pid}) on ${host.name}`)
      const leaders = new Set<string>()
      const until = Date.now() + 10_000
      while (Date.now() < until) {
        leaders.add((await patroniLeader())?.name ?? 'none')
        await sleep(500)
      }
      notes.leadersSeen = [...leaders].join(' ')
      await ctx.handles.startEtcd(host, ctx.log)
      ctx.note(`etcd on ${host.name} started again`)
    },
    async restore(ctx, notes) {
      const host = notedHost(notes.killed)
      if (host && ctx.handles.etcdPid(host) === undefined) await ctx.handles.startEtcd(host, ctx.log)
      await waitFor('every etcd member healthy', allEtcdHealthy)
    },
    check(_ctx, seen) {
      return [
        check(
          'the Patroni leader never changed',
          seen.notes.leadersSeen === seen.notes.leaderBefore,
          `leader before: ${seen.notes.leaderBefore}; leaders seen while the member was down: ${seen.notes.leadersSeen}`,
        ),
        check('no purchase failed', fiveXx(seen) === 0, `${fiveXx(seen)} 5xx`),
      ]
    },
  },
]

/** Requests one app host's worker has answered so far (its http_request_duration_seconds count). */
async function workerRequests(host: HaHost): Promise<number> {
  const text = await httpText(`http://${host.address}:${HA_PORTS.metrics}/metrics`, 2000)
  if (text === undefined) throw new Error(`${host.name}'s worker serves no metrics`)
  return sumOf(parsePrometheusText(text), 'http_request_duration_seconds_count')
}
