// `npm run kubernetes:check`: validates deploy/kubernetes/ without a cluster (see
// scripts/kubernetes/validate-manifests.ts for what is checked and what is not). Exits 1 on any problem.
import { KUBERNETES_SCHEMA_VERSION, validateManifests } from './kubernetes/validate-manifests.js'

const report = await validateManifests()
console.log(
  `kubernetes: ${report.files} files, ${report.manifests.length} objects; ` +
    `${report.schemaValidated.length} validated against the Kubernetes ${KUBERNETES_SCHEMA_VERSION} schemas, ` +
    `${report.notSchemaValidated.length} custom resources not schema-validated (structure only)`,
)
console.log(`  schema-validated: ${report.schemaValidated.join(', ')}`)
console.log(`  not schema-validated: ${report.notSchemaValidated.join(', ')}`)
if (report.problems.length > 0) {
  console.error(`kubernetes: ${report.problems.length} problem(s):`)
  for (const problem of report.problems) console.error(`  - ${problem}`)
  process.exitCode = 1
} else {
  console.log('kubernetes: no problems found')
}
