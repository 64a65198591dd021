// `npm run lab -- <name ...> [--quick] [--keep]`, `npm run lab -- --list`, `npm run lab -- --all`
// Break-it labs: each runs a broken variant of one concurrency decision, then the real code, on a stack
// of its own (.stack/labs, ports + 500), and prints the line that shows the difference. Exits 0 when
// every lab behaved as expected (the broken variant broke, the real code held). See docs/labs/.
import { parseArgs } from 'node:util'
import { stackDown } from '../../scripts/stack/stack.js'
import { LABS, labStackOptions, runLabs } from './runner.js'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    list: { type: 'boolean', default: false },
    all: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})

const list = LABS.map((lab) => `  ${lab.name.padEnd(12)} ${lab.title}`).join('\n')
if (values.list) {
  console.log(`labs (docs/labs/README.md):\n${list}`)
  process.exit(0)
}
const names = values.all ? LABS.map((lab) => lab.name) : positionals
if (values.help || names.length === 0) {
  console.log(`usage: npm run lab -- <name ...> [--quick] [--keep] | --all | --list\n\n${list}`)
  process.exit(values.help ? 0 : 2)
}

const unknown = names.filter((name) => !LABS.some((lab) => lab.name === name))
if (unknown.length > 0) {
  console.error(`no lab named ${unknown.join(', ')}\n\n${list}`)
  process.exit(2)
}
// Ctrl-C: stop the labs' stack before leaving (it runs detached and would outlive this process).
process.once('SIGINT', () => {
  console.log('\ninterrupted: stopping the labs stack')
  void stackDown(labStackOptions(process.env), () => undefined).finally(() => process.exit(130))
})

const outcomes = await runLabs(names, { quick: values.quick, keep: values.keep })
console.log(`\n${outcomes.map((o) => `${o.ok ? 'PASS' : 'FAIL'} ${o.name} (${o.seconds} s)`).join('\n')}`)
process.exitCode = outcomes.every((o) => o.ok) ? 0 : 1
