/**
 * `npm run chaos [-- --quick] [-- --json] [-- --runs N] [-- --phases kills,slow_commit,…]`: the chaos
 * harness as a command. Prints the checks as a table (or one JSON document per run) and exits 1 if
 * any check fails. `--phases` runs only the named fault phases (default: all of them).
 *
 * It prepares its own databases (the migrated template the harness clones) under the `chaos`
 * namespace, so it runs on a fresh machine and beside a test run without touching its databases.
 */
process.env.TEST_DB_NS ??= 'chaos'
const { default: prepareDatabases } = await import('../global-setup.ts')
const { FULL, PHASES, QUICK, formatChaos, runChaos } = await import('./harness.ts')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const json = args.includes('--json')
const runsArg = args.indexOf('--runs')
const runs = runsArg >= 0 ? Number(args[runsArg + 1]) : 1
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`--runs: expected a whole number ≥ 1, got "${args[runsArg + 1]}"\n`)
  process.exit(2)
}

const phasesArg = args.indexOf('--phases')
const phases = phasesArg >= 0 ? (args[phasesArg + 1] ?? '').split(',').filter(Boolean) : [...PHASES]
const unknown = phases.filter((p) => !(PHASES as readonly string[]).includes(p))
if (unknown.length) {
  process.stderr.write(`--phases: unknown phase "${unknown[0]}" (one of ${PHASES.join(', ')})\n`)
  process.exit(2)
}

await prepareDatabases()
let failed = false
for (let i = 1; i <= runs; i++) {
  const started = Date.now()
  const result = await runChaos({ ...(quick ? QUICK : FULL), phases: phases as (typeof PHASES)[number][], seed: 42 + i, log: (m) => process.stderr.write(`[run ${i}] ${m}\n`) })
  try {
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ run: i, ok: result.ok, mode: quick ? 'quick' : 'full', phases, duration_seconds: Math.round((Date.now() - started) / 1000), checks: result.checks, figures: result.figures, timeline: result.timeline })}\n`,
      )
    } else {
      process.stdout.write(`\nchaos run ${i}/${runs}: ${result.ok ? 'PASS' : 'FAIL'} in ${Math.round((Date.now() - started) / 1000)} s\n${formatChaos(result)}\n`)
    }
    failed ||= !result.ok
  } finally {
    await result.cleanup()
  }
}
process.exit(failed ? 1 : 0)
