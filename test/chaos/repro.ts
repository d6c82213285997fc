/**
 * `npx tsx test/chaos/repro.ts [1|3|6|7 …] [--json]`: re-runs reproductions of issue 18 the way the
 * issue describes them, against real Postgres and Redis and the sandbox over HTTP, and prints what
 * came out (one JSON document per reproduction with --json). Not a test: nothing here asserts timing;
 * it measures. Reproductions 2, 4 and 5 (a worker frozen past its lease, Redis lost, Postgres
 * connections terminated under load) run as phases of the chaos harness:
 * `npm run chaos -- --quick --phases sigstop` (and `redis_lost`, `pg_terminate`).
 *
 * 1  slow commit at NTS: `nts:latency=40000` for 1.5 s over 10 NTS receipts, the worker's default
 *    HTTP and retry settings (read timeout 15 s, backoff 5 s); the NTS commit window is 60 s instead
 *    of the 10-minute default so the run ends in about two minutes (the mechanism is the same).
 * 3  bad rows: a payment_ref two merchants share and one longer than the key index allows, through
 *    `import` (and written straight into the table, past import), then `settle` for the day and the
 *    next four carry-over days.
 * 6  a worker pointed at another database with the right Redis prefix.
 * 7  import of JSONL with arrays, objects, booleans, and CSV and JSONL with a NUL byte.
 */
process.env.TEST_DB_NS ??= 'chaosrepro'
const { default: prepareDatabases } = await import('../global-setup.ts')
const { startSandbox } = await import('../../sandbox/index.ts')
const { createTestDatabase, createTestEnv, eventually } = await import('../helpers/test-env.ts')
const { importDay, runCli, settle } = await import('../helpers/pipeline.ts')
const { mkdtemp, rm, writeFile } = await import('node:fs/promises')
const { tmpdir } = await import('node:os')
const { join } = await import('node:path')
const { randomBytes } = await import('node:crypto')

const args = process.argv.slice(2)
const json = args.includes('--json')
const picked = args.filter((a) => /^\d$/.test(a))
const which = picked.length ? picked : ['1', '3', '6', '7']

type Out = Record<string, unknown>
const print = (n: string, out: Out) => process.stdout.write(json ? `${JSON.stringify({ reproduction: Number(n), ...out })}\n` : `\nreproduction ${n}\n${JSON.stringify(out, null, 2)}\n`)

async function slowCommit(): Promise<Out> {
  const sandbox = await startSandbox({ port: 0 })
  // The worker's defaults for HTTP and retries; only the commit window is shortened (see above).
  const env = await createTestEnv({ sandboxUrl: sandbox.url, env: { HTTP_READ_TIMEOUT_MS: '15000', HTTP_CONNECT_TIMEOUT_MS: '5000', WORKER_BACKOFF_MS: '5000', WORKER_LEASE_MS: '120000', NTS_COMMIT_WINDOW_MS: '60000' } })
  try {
    const app = env.app
    await importDay(app, { businessDate: '2026-11-10', count: 10, seed: 18, providers: ['nts'], idPrefix: 'R1' })
    const s = await settle(app, '2026-11-10')
    const rows = () => app.db().selectFrom('receipts').selectAll().where('run_id', '=', s.runId!).where('kind', '=', 'issue').execute()
    const eligible = (await rows()).filter((r) => r.state !== 'skipped').length
    const t0 = Date.now()
    sandbox.setFaults('nts:latency=40000')
    app.startWorker({ concurrency: 16 })
    // 1.5 s from the first issue request on (a loaded machine may take longer than that to start).
    await eventually(async () => (await rows()).some((r) => r.last_sent_at !== null), 120_000, 20)
    await new Promise((r) => setTimeout(r, 1_500))
    sandbox.setFaults('')
    const sentInWindow = (await rows()).filter((r) => r.last_sent_at !== null).length
    const done = await eventually(async () => {
      const all = await rows()
      return all.every((r) => r.state === 'issued' || r.state === 'skipped' || r.state === 'failed') ? all : undefined
    }, 300_000, 500)
    const stats = sandbox.stats()
    const attempts = await app.db().selectFrom('issuance_attempts').select(['operation', 'outcome']).where('receipt_id', 'in', done.map((r) => r.id)).execute()
    return {
      receipts: eligible,
      issue_requests_sent_while_slow: sentInWindow,
      issued_in_ledger: done.filter((r) => r.state === 'issued').length,
      failed: done.filter((r) => r.state === 'failed').length,
      nts_receipts_held: stats.providers.nts.issued,
      max_receipts_per_key: stats.max_receipts_per_key,
      max_live_receipts_per_key: stats.max_live_receipts_per_key,
      issue_requests: attempts.filter((a) => a.operation === 'issue').length,
      lookups: attempts.filter((a) => a.operation === 'lookup').length,
      seconds_to_all_terminal: Math.round((Date.now() - t0) / 1000),
    }
  } finally {
    await env.close()
    await sandbox.close()
  }
}

async function badRows(): Promise<Out> {
  const sandbox = await startSandbox({ port: 0 })
  const env = await createTestEnv({ sandboxUrl: sandbox.url })
  const dir = await mkdtemp(join(tmpdir(), 'cr-repro3-'))
  try {
    const app = env.app
    const day = '2026-11-11'
    const long = `pay-${randomBytes(3_000).toString('hex')}`
    const header = 'transaction_id,merchant_id,provider,payment_ref,method,amount,paid_at,status'
    const line = (id: string, merchant: string, ref: string) => `${id},${merchant},portone-v2,${ref},bank_transfer,33000,${day}T03:00:00+00:00,completed`
    await writeFile(join(dir, 'bad.csv'), [header, line('R3-A', 'm-clinic', 'pay-shared'), line('R3-B', 'm-academy', 'pay-shared'), line('R3-LONG', 'm-shop', long), line('R3-OK', 'm-shop', 'pay-r3-ok')].join('\n') + '\n')
    const strict = await runCli(['import', join(dir, 'bad.csv'), '--json'], env.env())
    const skipping = await runCli(['import', join(dir, 'bad.csv'), '--skip-invalid', '--json'], env.env())
    // Past import: the same two written straight into the table (an older version, a hand-made INSERT).
    for (const [id, merchant, ref] of [['R3-DIRECT-B', 'm-academy', 'pay-shared'], ['R3-DIRECT-LONG', 'm-shop', long]] as const) {
      await app.db().insertInto('cash_transactions').values({ transaction_id: id, merchant_id: merchant, provider: 'portone-v2', payment_ref: ref, order_id: null, order_name: null, method: 'bank_transfer', amount: 33_000, paid_at: new Date(`${day}T03:00:00Z`), business_date: day, identifier_type: null, identifier_masked: null, pii_enc: null, data_key_id: null, content_hash: `direct-${id}` }).execute()
    }
    const settles: { date: string; code: number; rejected?: number; created?: number }[] = []
    for (const d of [day, '2026-11-12', '2026-11-13', '2026-11-14', '2026-11-15']) {
      const r = await runCli(['settle', '--date', d, '--json'], env.env())
      const j = r.code === 0 ? (JSON.parse(r.stdout) as { rejected: number; created: number }) : null
      settles.push({ date: d, code: r.code, rejected: j?.rejected, created: j?.created })
    }
    return {
      import_exit: strict.code,
      import_errors: strict.stderr.split('\n').filter((l) => /^line \d+/.test(l)).map((l) => l.slice(0, 160)),
      import_skip_invalid_exit: skipping.code,
      import_skip_invalid_written: skipping.code === 0 ? JSON.parse(skipping.stdout) : skipping.stderr.slice(0, 300),
      settle_runs: settles,
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    await env.close()
    await sandbox.close()
  }
}

async function wrongDatabase(): Promise<Out> {
  const env = await createTestEnv()
  const other = await createTestDatabase()
  try {
    await env.app.checkDeployment()
    await runCli(['migrate'], env.env({ DATABASE_URL: other.url }), 300_000)
    const r = await runCli(['worker'], env.env({ DATABASE_URL: other.url }), 300_000)
    return { worker_exit: r.code, message: r.stderr.split('\n').find((l) => l.includes('refusing to start'))?.slice(0, 400) ?? r.stderr.slice(-400) }
  } finally {
    await env.close()
    await other.drop()
  }
}

async function importContract(): Promise<Out> {
  const env = await createTestEnv()
  const dir = await mkdtemp(join(tmpdir(), 'cr-repro7-'))
  try {
    const row = (over: Record<string, unknown>) => JSON.stringify({ transaction_id: 'R7-OK', merchant_id: 'm-shop', provider: 'payssam', method: 'cash', amount: '5000', paid_at: '2026-11-16T03:00:00+00:00', ...over })
    await writeFile(join(dir, 'types.jsonl'), [row({}), row({ transaction_id: 'R7-ARR', amount: [5000] }), row({ transaction_id: 'R7-OBJ', order_name: { a: 1 } }), row({ transaction_id: 'R7-BOOL', status: true }), row({ transaction_id: 'R7-NUL', order_name: 'a\u0000b' })].join('\n') + '\n')
    await writeFile(join(dir, 'nul.csv'), 'transaction_id,merchant_id,provider,method,amount,paid_at,order_name\nR7-CSV-OK,m-shop,payssam,cash,5000,2026-11-16T03:00:00+00:00,ok\nR7-CSV-NUL,m-shop,payssam,cash,5000,2026-11-16T03:00:00+00:00,a\u0000b\n')
    const out: Out = {}
    for (const f of ['types.jsonl', 'nul.csv']) {
      const strict = await runCli(['import', join(dir, f), '--json'], env.env())
      const skip = await runCli(['import', join(dir, f), '--skip-invalid', '--json'], env.env())
      out[f] = {
        exit: strict.code,
        errors: strict.stderr.split('\n').filter((l) => /^line \d+/.test(l)),
        skip_invalid_exit: skip.code,
        skip_invalid: skip.code === 0 ? JSON.parse(skip.stdout) : skip.stderr.slice(0, 300),
      }
    }
    const stored = await env.app.db().selectFrom('cash_transactions').select(['transaction_id', 'order_name']).orderBy('transaction_id').execute()
    out.stored = stored
    return out
  } finally {
    await rm(dir, { recursive: true, force: true })
    await env.close()
  }
}

await prepareDatabases()
const scenarios: Record<string, () => Promise<Out>> = { '1': slowCommit, '3': badRows, '6': wrongDatabase, '7': importContract }
for (const n of which) {
  const run = scenarios[n]
  if (!run) {
    process.stderr.write(`reproduction ${n}: run it as a chaos phase (see the header of this file)\n`)
    process.exit(2)
  }
  print(n, await run())
}
process.exit(0)
