import { describe, expect, it } from 'vitest'
import {
  checkObject,
  crossCheckProblems,
  KUBERNETES_SCHEMA_VERSION,
  type Manifest,
  validateManifests,
} from '../../scripts/kubernetes/validate-manifests.js'

// deploy/kubernetes/ checked without a cluster: Kubernetes' own schemas for the built-in kinds, structure for
// the operators' resources, and the cross-checks no schema makes. Reads files; needs no server.

/** A deep copy of the committed manifests, to break one thing in. */
async function committed(): Promise<Manifest[]> {
  const { manifests } = await validateManifests()
  return structuredClone(manifests)
}

function find(manifests: Manifest[], label: string): Record<string, unknown> {
  const found = manifests.find(
    (m) => `${String(m.object.kind)}/${String((m.object.metadata as { name: string }).name)}` === label,
  )
  if (!found) throw new Error(`${label} is not in deploy/kubernetes`)
  return found.object
}

describe('deploy/kubernetes manifests', () => {
  it(`when the committed manifests are checked, then every built-in object passes the Kubernetes ${KUBERNETES_SCHEMA_VERSION} schema and no check fails`, async () => {
    const report = await validateManifests()
    expect(report.problems).toEqual([])
    expect(report.schemaValidated).toEqual(
      expect.arrayContaining([
        'Deployment/api',
        'Service/api',
        'PodDisruptionBudget/api',
        'HorizontalPodAutoscaler/api',
        'Deployment/jobs',
        'Service/jobs',
        'Job/migrate',
        'Deployment/nginx',
        'Service/nginx',
        'ConfigMap/nginx-settings',
        'ConfigMap/stampede-settings',
        'Secret/stampede-secrets',
      ]),
    )
    // The operators' resources have no schema here: they are named as not schema-validated, not passed over.
    expect(report.notSchemaValidated).toEqual([
      'postgresql/stampede-db (Zalando postgres-operator)',
      'RedisReplication/redis (OT-CONTAINER-KIT redis-operator)',
      'RedisSentinel/redis (OT-CONTAINER-KIT redis-operator)',
    ])
    expect(report.schemaValidated.length + report.notSchemaValidated.length).toBe(report.manifests.length)
  })

  it('when a Deployment has replicas "two" and a container without a name, then the schema check names both', async () => {
    const broken = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'broken' },
      spec: {
        replicas: 'two',
        selector: { matchLabels: { app: 'broken' } },
        template: {
          metadata: { labels: { app: 'broken' } },
          spec: { containers: [{ image: 'stampede:latest' }] },
        },
      },
    }
    const { schema, problems } = await checkObject(broken)
    expect(schema).toBe(true)
    expect(problems).toEqual(
      expect.arrayContaining([
        '/spec/replicas must be integer',
        '/spec/template/spec/containers/0 must have required property name',
      ]),
    )
  })

  it('when an apiVersion belongs neither to Kubernetes nor to one of the two operators, then it is an error, not a custom resource', async () => {
    const { schema, problems } = await checkObject({
      apiVersion: 'apps/v2',
      kind: 'Deployment',
      metadata: { name: 'x' },
    })
    expect(schema).toBe(false)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain('apps/v2 Deployment is neither')
  })

  it('when the api Service selects pods no workload makes, then the cross-check says so', async () => {
    const manifests = await committed()
    const service = find(manifests, 'Service/api') as { spec: { selector: Record<string, string> } }
    service.spec.selector = { 'app.kubernetes.io/name': 'apis' }
    expect(crossCheckProblems(manifests)).toEqual([
      'api.yaml#2 Service/api: its selector matches the pods of no workload',
    ])
  })

  it('when a setting is misspelt or the drain outlasts the grace period, then the check names the variable', async () => {
    const manifests = await committed()
    const settings = find(manifests, 'ConfigMap/stampede-settings') as { data: Record<string, string> }
    settings.data.SHUTDOWN_DRAIN_MS = '30000'
    settings.data.REPLICA_MAX_LAG = '1000'
    const problems = crossCheckProblems(manifests)
    expect(problems).toContain(
      'api.yaml#1 Deployment/api container api: terminationGracePeriodSeconds must cover SHUTDOWN_DRAIN_MS + 5000 ms (35000 ms)',
    )
    expect(problems).toContain(
      'api.yaml#1 Deployment/api container api: REPLICA_MAX_LAG is not a setting of src/config.ts',
    )
  })

  it('when a real value replaces a Secret placeholder, then the check refuses to let it into Git', async () => {
    const manifests = await committed()
    const secret = find(manifests, 'Secret/stampede-secrets') as { stringData: Record<string, string> }
    secret.stringData.JWT_SECRET = 'a-real-looking-secret-of-forty-characters!!'
    expect(crossCheckProblems(manifests)).toEqual([
      'settings.yaml#2 Secret/stampede-secrets: JWT_SECRET must be the placeholder REPLACE in Git',
    ])
  })
})
