/**
 * `npm run chaos [-- --quick] [-- --json] [-- --runs N]`: the chaos harness as a command. Prints the
 * checks as a table (or one JSON document per run) and exits 1 if any check fails.
 */
import { FULL, QUICK, formatChaos, runChaos } from './harness.ts'

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const json = args.includes('--json')
const runsArg = args.indexOf('--runs')
const runs = runsArg >= 0 ? Number(args[runsArg + 1]) : 1

let failed = false
for (let i = 1; i <= runs; i++) {
  const result = await runChaos({ ...(quick ? QUICK : FULL), seed: 42 + i, log: (m) => process.stderr.write(`[run ${i}] ${m}\n`) })
  try {
    if (json) process.stdout.write(`${JSON.stringify({ run: i, ok: result.ok, checks: result.checks, figures: result.figures })}\n`)
    else process.stdout.write(`\nchaos run ${i}/${runs}: ${result.ok ? 'PASS' : 'FAIL'}\n${formatChaos(result)}\n`)
    failed ||= !result.ok
  } finally {
    await result.cleanup()
  }
}
process.exit(failed ? 1 : 0)
