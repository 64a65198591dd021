import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parseAllDocuments } from 'yaml'
import { CONFIG_KEYS, ConfigError, loadConfig } from '../../src/config.js'
import { REPO_ROOT } from '../stack/paths.js'

// Checks deploy/kubernetes/ without a cluster (`npm run kubernetes:check`, and test/unit/kubernetes-manifests.test.ts):
//   1. every file parses as YAML, and kustomization.yaml lists exactly the manifest files;
//   2. every built-in object validates against the Kubernetes API's OpenAPI schema (kubernetes-models, whose
//      schemas are Kubernetes 1.33's): types, required fields, enums. Those schemas allow unknown fields, so
//      a misspelt key is not caught here; the API server's strict field validation catches it at apply;
//   3. the operators' custom resources have no schema offline: they get apiVersion, kind, metadata and spec
//      checked, and are reported as "not schema-validated";
//   4. what no schema sees: Services and budgets select pods some workload makes, probes and Services name
//      ports that exist, every ConfigMap and Secret referenced exists, the app's environment is valid for
//      src/config.ts, the database and Sentinel addresses match the operators' resources, the shutdown
//      grace covers the drain, and the committed Secret holds placeholders only.

export const MANIFEST_DIR = path.join(REPO_ROOT, 'deploy/kubernetes')
export const NAMESPACE = 'stampede'
export const KUBERNETES_SCHEMA_VERSION = '1.33'
/** The API groups of the two operators' custom resources (postgres.yaml, redis.yaml). */
export const OPERATOR_API_GROUPS: Record<string, string> = {
  'acid.zalan.do': 'Zalando postgres-operator',
  'redis.redis.opstreelabs.in': 'OT-CONTAINER-KIT redis-operator',
}
/** The value of every key of a committed Secret: too short for any setting, so a forgotten one stops start-up. */
export const SECRET_PLACEHOLDER = 'REPLACE'
/** Like PM2's kill_timeout: the kubelet's SIGKILL comes at least this long after the drain ends. */
export const SHUTDOWN_MARGIN_MS = 5000

type Json = Record<string, unknown>

export interface Manifest {
  /** `api.yaml#2`: the file and the document's position in it (from 1). */
  source: string
  object: Json
}

export interface ValidationReport {
  files: number
  manifests: Manifest[]
  /** `Kind/name` of each object that passed its Kubernetes schema. */
  schemaValidated: string[]
  /** `Kind/name (operator)` of each custom resource: structure checked, no schema. */
  notSchemaValidated: string[]
  problems: string[]
}

const isObject = (value: unknown): value is Json =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
const objectAt = (value: unknown, ...keys: string[]): Json => {
  let current = value
  for (const key of keys) current = isObject(current) ? current[key] : undefined
  return isObject(current) ? current : {}
}
const listAt = (value: unknown, ...keys: string[]): Json[] => {
  const parent = objectAt(value, ...keys.slice(0, -1))
  const list = parent[keys[keys.length - 1]!]
  return Array.isArray(list) ? list.filter(isObject) : []
}
const nameOf = (object: Json) => String(objectAt(object, 'metadata').name ?? '?')
export const labelOf = (object: Json) => `${String(object.kind ?? '?')}/${nameOf(object)}`

/** Every YAML document of one file; a syntax error or a duplicate key is a problem, not a crash. */
export function parseManifests(file: string, text: string): { manifests: Manifest[]; problems: string[] } {
  const manifests: Manifest[] = []
  const problems: string[] = []
  parseAllDocuments(text).forEach((document, index) => {
    const source = `${file}#${index + 1}`
    if (document.errors.length > 0) {
      problems.push(...document.errors.map((error) => `${source}: YAML: ${error.message}`))
      return
    }
    const object: unknown = document.toJS()
    if (object === null || object === undefined) return
    if (!isObject(object)) problems.push(`${source}: a manifest must be a mapping`)
    else manifests.push({ source, object })
  })
  return { manifests, problems }
}

function groupAndVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.indexOf('/')
  return slash < 0
    ? { group: '', version: apiVersion }
    : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) }
}

/** The kubernetes-models class of a built-in kind, e.g. `apps/v1` + `Deployment`; undefined when there is none. */
async function modelOf(
  apiVersion: string,
  kind: string,
): Promise<(new (data: Json) => { validate(): void }) | undefined> {
  const { group, version } = groupAndVersion(apiVersion)
  if (!/^[a-z0-9.]*$/.test(group) || !/^v[0-9a-z]+$/.test(version)) return undefined
  const specifier = ['kubernetes-models', group, version].filter(Boolean).join('/')
  const module = (await import(specifier).catch(async (err: unknown) => {
    // Without the package every kind would look unknown: say what is missing instead.
    const installed = await import('kubernetes-models/v1' as string).then(
      () => true,
      () => false,
    )
    if (!installed) throw new Error('kubernetes-models is not installed: run npm ci', { cause: err })
    return undefined
  })) as Record<string, unknown> | undefined
  const model = module?.[kind]
  return typeof model === 'function' ? (model as new (data: Json) => { validate(): void }) : undefined
}

/**
 * Validates one object: a built-in kind against its schema, an operator's custom resource by structure.
 * `schema`: whether a schema was applied.
 */
export async function checkObject(object: Json): Promise<{ schema: boolean; problems: string[] }> {
  const problems: string[] = []
  const { apiVersion, kind } = object
  const metadata = object.metadata
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    return { schema: false, problems: ['apiVersion and kind must be strings'] }
  }
  if (!isObject(metadata) || typeof metadata.name !== 'string' || metadata.name === '') {
    problems.push('metadata.name is missing')
  }
  const operator = OPERATOR_API_GROUPS[groupAndVersion(apiVersion).group]
  if (operator) {
    if (!isObject(object.spec)) problems.push('spec is missing')
    return { schema: false, problems }
  }
  const Model = await modelOf(apiVersion, kind)
  if (!Model) {
    problems.push(
      `${apiVersion} ${kind} is neither a kind of Kubernetes ${KUBERNETES_SCHEMA_VERSION} nor a resource of ${Object.values(OPERATOR_API_GROUPS).join(' or ')}`,
    )
    return { schema: false, problems }
  }
  try {
    new Model(object).validate()
  } catch (err) {
    const errors = (err as { errors?: { instancePath?: string; message?: string }[] }).errors
    if (Array.isArray(errors) && errors.length > 0) {
      problems.push(...errors.map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`))
    } else problems.push((err as Error).message)
  }
  return { schema: true, problems }
}

/** kustomization.yaml names every manifest file of the folder, and only those, and the namespace. */
export function kustomizationProblems(kustomization: Json, manifestFiles: string[]): string[] {
  const problems: string[] = []
  const listed = Array.isArray(kustomization.resources) ? kustomization.resources.map(String) : []
  for (const file of manifestFiles) {
    if (!listed.includes(file)) problems.push(`kustomization.yaml: ${file} is not listed in resources`)
  }
  for (const file of listed) {
    if (!manifestFiles.includes(file))
      problems.push(`kustomization.yaml: ${file} is listed but does not exist`)
  }
  if (kustomization.namespace !== NAMESPACE)
    problems.push(`kustomization.yaml: namespace must be ${NAMESPACE}`)
  return problems
}

interface Workload {
  object: Json
  podLabels: Json
  containers: Json[]
}

const selects = (selector: Json, labels: Json) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value)

function workloadsOf(objects: Json[]): Workload[] {
  return objects
    .filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(String(o.kind)))
    .map((object) => ({
      object,
      podLabels: objectAt(object, 'spec', 'template', 'metadata', 'labels'),
      containers: listAt(object, 'spec', 'template', 'spec', 'containers'),
    }))
}

const portNames = (workload: Workload) =>
  workload.containers.flatMap((c) => listAt(c, 'ports')).map((p) => [p.name, p.containerPort])

/**
 * The container's environment as the kubelet would build it: envFrom first, then env in order with
 * $(NAME) expanded. Secret values become `secretValue` (the committed ones are placeholders).
 */
function environmentOf(container: Json, byName: Map<string, Json>, secretValue: string): Map<string, string> {
  const env = new Map<string, string>()
  for (const source of listAt(container, 'envFrom')) {
    const configMap = byName.get(`ConfigMap/${String(objectAt(source, 'configMapRef').name)}`)
    for (const [key, value] of Object.entries(objectAt(configMap, 'data'))) env.set(key, String(value))
    const secret = byName.get(`Secret/${String(objectAt(source, 'secretRef').name)}`)
    for (const key of Object.keys({ ...objectAt(secret, 'data'), ...objectAt(secret, 'stringData') })) {
      env.set(key, secretValue)
    }
  }
  for (const entry of listAt(container, 'env')) {
    const name = String(entry.name)
    if (typeof entry.value === 'string') {
      env.set(
        name,
        entry.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, ref: string) => env.get(ref) ?? all),
      )
    } else if (isObject(entry.valueFrom)) {
      const configMapKey = objectAt(entry, 'valueFrom', 'configMapKeyRef')
      const configMap = byName.get(`ConfigMap/${String(configMapKey.name)}`)
      const value = objectAt(configMap, 'data')[String(configMapKey.key)]
      env.set(name, typeof value === 'string' ? value : secretValue)
    }
  }
  return env
}

/** Names that some env value refers to as $(NAME): helpers such as DB_PASSWORD, not settings. */
const referencedNames = (container: Json) =>
  new Set(
    listAt(container, 'env').flatMap((entry) =>
      typeof entry.value === 'string'
        ? [...entry.value.matchAll(/\$\(([A-Za-z0-9_]+)\)/g)].map((m) => m[1]!)
        : [],
    ),
  )

/** Whether a container runs the app image (the root Dockerfile's `stampede`). */
const runsTheApp = (container: Json) => /^(.*\/)?stampede(:|@|$)/.test(String(container.image))

/** The checks no schema makes, across all objects. */
export function crossCheckProblems(manifests: Manifest[]): string[] {
  const problems: string[] = []
  const objects = manifests.map((m) => m.object)
  const where = new Map(manifests.map((m) => [m.object, m.source]))
  const problem = (object: Json, text: string) =>
    problems.push(`${where.get(object) ?? '?'} ${labelOf(object)}: ${text}`)
  const byName = new Map<string, Json>()
  for (const object of objects) {
    const key = labelOf(object)
    if (byName.has(key)) problem(object, 'defined twice')
    byName.set(key, object)
    const namespace = objectAt(object, 'metadata').namespace
    if (object.kind !== 'Namespace' && namespace !== NAMESPACE)
      problem(object, `namespace must be ${NAMESPACE}`)
  }
  const workloads = workloadsOf(objects)
  const postgres = objects.find((o) => o.kind === 'postgresql')
  const sentinel = objects.find((o) => o.kind === 'RedisSentinel')

  const secretExists = (name: string, key?: string) => {
    // The operator makes <role>.<cluster>.credentials.postgresql.acid.zalan.do for each role of postgres.yaml.
    const made = /^([a-z0-9_-]+)\.([a-z0-9-]+)\.credentials\.postgresql\.acid\.zalan\.do$/.exec(name)
    if (made) {
      return (
        postgres !== undefined &&
        nameOf(postgres) === made[2] &&
        made[1]! in objectAt(postgres, 'spec', 'users') &&
        (key === undefined || key === 'password' || key === 'username')
      )
    }
    const secret = byName.get(`Secret/${name}`)
    return (
      secret !== undefined &&
      (key === undefined || key in { ...objectAt(secret, 'data'), ...objectAt(secret, 'stringData') })
    )
  }
  const configMapExists = (name: string, key?: string) => {
    const configMap = byName.get(`ConfigMap/${name}`)
    return configMap !== undefined && (key === undefined || key in objectAt(configMap, 'data'))
  }

  for (const workload of workloads) {
    const { object, podLabels, containers } = workload
    if (object.kind !== 'Job' && !selects(objectAt(object, 'spec', 'selector', 'matchLabels'), podLabels)) {
      problem(object, 'spec.selector.matchLabels does not match the pod template labels')
    }
    const ports = portNames(workload)
    for (const container of containers) {
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        const port =
          objectAt(container, probe, 'httpGet').port ?? objectAt(container, probe, 'tcpSocket').port
        if (port !== undefined && !ports.some(([name, number]) => name === port || number === port)) {
          problem(object, `${probe} uses port ${String(port)}, which the container does not declare`)
        }
      }
      for (const source of listAt(container, 'envFrom')) {
        const configMap = objectAt(source, 'configMapRef').name
        const secret = objectAt(source, 'secretRef').name
        if (configMap !== undefined && !configMapExists(String(configMap))) {
          problem(object, `envFrom names ConfigMap ${String(configMap)}, which is not defined`)
        }
        if (secret !== undefined && !secretExists(String(secret))) {
          problem(object, `envFrom names Secret ${String(secret)}, which is not defined`)
        }
      }
      for (const entry of listAt(container, 'env')) {
        const secretKey = objectAt(entry, 'valueFrom', 'secretKeyRef')
        const configMapKey = objectAt(entry, 'valueFrom', 'configMapKeyRef')
        if (secretKey.name !== undefined && !secretExists(String(secretKey.name), String(secretKey.key))) {
          problem(
            object,
            `env ${String(entry.name)} reads Secret ${String(secretKey.name)}, which is not defined`,
          )
        }
        if (
          configMapKey.name !== undefined &&
          !configMapExists(String(configMapKey.name), String(configMapKey.key))
        ) {
          problem(
            object,
            `env ${String(entry.name)} reads ConfigMap ${String(configMapKey.name)}, which is not defined`,
          )
        }
      }
      if (runsTheApp(container)) problems.push(...appSettingsProblems(object, container, byName, where))
    }
    for (const volume of listAt(object, 'spec', 'template', 'spec', 'volumes')) {
      const configMap = objectAt(volume, 'configMap').name
      if (configMap !== undefined && !configMapExists(String(configMap))) {
        problem(
          object,
          `volume ${String(volume.name)} names ConfigMap ${String(configMap)}, which is not defined`,
        )
      }
    }
  }

  for (const object of objects) {
    const selector =
      object.kind === 'Service'
        ? objectAt(object, 'spec', 'selector')
        : objectAt(object, 'spec', 'selector', 'matchLabels')
    if (object.kind === 'Service' || object.kind === 'PodDisruptionBudget') {
      const target = workloads.find((w) => selects(selector, w.podLabels))
      if (!target) {
        problem(object, 'its selector matches the pods of no workload')
        continue
      }
      if (object.kind === 'Service') {
        const ports = portNames(target)
        for (const port of listAt(object, 'spec', 'ports')) {
          const targetPort = port.targetPort ?? port.port
          if (!ports.some(([name, number]) => name === targetPort || number === targetPort)) {
            problem(object, `targetPort ${String(targetPort)} is not a port of ${labelOf(target.object)}`)
          }
        }
      }
    }
    if (object.kind === 'HorizontalPodAutoscaler') {
      const ref = objectAt(object, 'spec', 'scaleTargetRef')
      const target = byName.get(`${String(ref.kind)}/${String(ref.name)}`)
      if (!target) problem(object, `scaleTargetRef ${String(ref.kind)}/${String(ref.name)} is not defined`)
      else if (objectAt(target, 'spec').replicas !== undefined) {
        problem(target, 'sets spec.replicas, which would reset the autoscaler on every apply')
      }
    }
    if (object.kind === 'Secret') {
      for (const [key, value] of Object.entries({
        ...objectAt(object, 'data'),
        ...objectAt(object, 'stringData'),
      })) {
        if (value !== SECRET_PLACEHOLDER)
          problem(object, `${key} must be the placeholder ${SECRET_PLACEHOLDER} in Git`)
      }
    }
    if (object.kind === 'postgresql') {
      const spec = objectAt(object, 'spec')
      if (!nameOf(object).startsWith(`${String(spec.teamId)}-`))
        problem(object, 'its name must start with teamId-')
      if (objectAt(spec, 'patroni').synchronous_mode !== true)
        problem(object, 'patroni.synchronous_mode must be true')
    }
    if (object.kind === 'RedisReplication') {
      const name = String(objectAt(object, 'spec', 'redisConfig').additionalRedisConfig)
      const text = String(objectAt(byName.get(`ConfigMap/${name}`), 'data')['redis-additional.conf'] ?? '')
      if (!/^min-replicas-to-write [1-9]/m.test(text) || !/^min-replicas-max-lag [1-9]/m.test(text)) {
        problem(object, `ConfigMap ${name} must set min-replicas-to-write and min-replicas-max-lag`)
      }
    }
    if (object.kind === 'RedisSentinel') {
      const replication = String(objectAt(object, 'spec', 'redisSentinelConfig').redisReplicationName)
      if (!byName.has(`RedisReplication/${replication}`))
        problem(object, `RedisReplication ${replication} is not defined`)
    }
  }
  if (postgres === undefined) problems.push('no postgresql resource (postgres.yaml)')
  if (sentinel === undefined) problems.push('no RedisSentinel resource (redis.yaml)')
  return problems
}

/** The environment of a container that runs the app: known settings, valid for src/config.ts, wired right. */
function appSettingsProblems(
  workload: Json,
  container: Json,
  byName: Map<string, Json>,
  where: Map<Json, string>,
): string[] {
  const problems: string[] = []
  const problem = (text: string) =>
    problems.push(
      `${where.get(workload) ?? '?'} ${labelOf(workload)} container ${String(container.name)}: ${text}`,
    )
  const env = environmentOf(container, byName, 'a-secret-long-enough-for-every-setting-0123456789')
  const helpers = referencedNames(container)
  const known = new Set<string>(CONFIG_KEYS)
  for (const name of env.keys()) {
    if (!known.has(name) && !helpers.has(name)) problem(`${name} is not a setting of src/config.ts`)
  }
  if (env.has('NODE_APP_INSTANCE')) problem('NODE_APP_INSTANCE is for PM2 workers; a pod runs one process')
  if (env.get('API_INSTANCES') !== '1') problem('API_INSTANCES must be 1: one process per pod')
  try {
    const config = loadConfig(Object.fromEntries(env))
    const objects = [...byName.values()]
    const postgres = objects.find((o) => o.kind === 'postgresql')
    if (postgres && env.has('DATABASE_URL') && new URL(config.DATABASE_URL).hostname !== nameOf(postgres)) {
      problem(`DATABASE_URL must point at the operator's primary Service ${nameOf(postgres)}`)
    }
    if (
      postgres &&
      env.has('DATABASE_REPLICA_URL') &&
      new URL(config.DATABASE_REPLICA_URL).hostname !== `${nameOf(postgres)}-repl`
    ) {
      problem(`DATABASE_REPLICA_URL must point at the operator's replica Service ${nameOf(postgres)}-repl`)
    }
    const sentinel = objects.find((o) => o.kind === 'RedisSentinel')
    if (sentinel) {
      const groupName = objectAt(sentinel, 'spec', 'redisSentinelConfig').masterGroupName
      if (env.get('REDIS_SENTINEL_NAME') !== groupName) {
        problem(`REDIS_SENTINEL_NAME must be the RedisSentinel's masterGroupName (${String(groupName)})`)
      }
      // loadConfig has already refused any entry that is not host:port.
      const service = `${nameOf(sentinel)}-sentinel`
      if (config.REDIS_SENTINELS.length === 0)
        problem(`REDIS_SENTINELS must list the Sentinels (${service}...)`)
      for (const { host, port } of config.REDIS_SENTINELS) {
        if (!host.split('.').some((part) => part.startsWith(service))) {
          problem(`REDIS_SENTINELS entry "${host}:${port}" is not one of the Sentinels (${service}...)`)
        }
      }
    }
    const command = Array.isArray(container.command) ? container.command.join(' ') : ''
    const grace = objectAt(workload, 'spec', 'template', 'spec').terminationGracePeriodSeconds
    if (command.includes('dist/src/server.js')) {
      const needed = config.SHUTDOWN_DRAIN_MS + SHUTDOWN_MARGIN_MS
      if (typeof grace !== 'number' || grace * 1000 < needed) {
        problem(
          `terminationGracePeriodSeconds must cover SHUTDOWN_DRAIN_MS + ${SHUTDOWN_MARGIN_MS} ms (${needed} ms)`,
        )
      }
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problem(`the settings are not valid for src/config.ts: ${err.problems.join('; ')}`)
  }
  return problems
}

/** Reads deploy/kubernetes/ and runs every check. */
export async function validateManifests(dir = MANIFEST_DIR): Promise<ValidationReport> {
  const files = readdirSync(dir)
    .filter((file) => /\.ya?ml$/.test(file))
    .sort()
  const manifestFiles = files.filter((file) => file !== 'kustomization.yaml')
  const problems: string[] = []
  const manifests: Manifest[] = []
  for (const file of manifestFiles) {
    const parsed = parseManifests(file, readFileSync(path.join(dir, file), 'utf8'))
    manifests.push(...parsed.manifests)
    problems.push(...parsed.problems)
  }
  if (files.includes('kustomization.yaml')) {
    const parsed = parseManifests(
      'kustomization.yaml',
      readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'),
    )
    problems.push(...parsed.problems)
    problems.push(...kustomizationProblems(parsed.manifests[0]?.object ?? {}, manifestFiles))
  } else problems.push('kustomization.yaml is missing')

  const schemaValidated: string[] = []
  const notSchemaValidated: string[] = []
  for (const { source, object } of manifests) {
    const checked = await checkObject(object)
    problems.push(...checked.problems.map((text) => `${source} ${labelOf(object)}: ${text}`))
    if (checked.problems.length > 0) continue
    if (checked.schema) schemaValidated.push(labelOf(object))
    else {
      const operator = OPERATOR_API_GROUPS[groupAndVersion(String(object.apiVersion)).group]
      notSchemaValidated.push(`${labelOf(object)} (${operator ?? 'unknown'})`)
    }
  }
  problems.push(...crossCheckProblems(manifests))
  return { files: files.length, manifests, schemaValidated, notSchemaValidated, problems }
}
