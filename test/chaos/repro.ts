/**
 * `npx tsx test/chaos/repro.ts [1|2|3|6|7 …] [--json]`: re-runs reproductions of issue 18 the way the
 * issue describes them, against real Postgres and Redis and the sandbox over HTTP, and prints what
 * came out (one JSON document per reproduction with --json). Not a test: nothing here asserts timing;
 * it measures. Reproductions 4 and 5 (Redis lost, Postgres connections terminated under load) run as
 * phases of the chaos harness: `npm run chaos -- --quick --phases redis_lost` (and `pg_terminate`);
 * reproduction 2 is also the harness's `sigstop` phase, there mixed with every other fault.
 *
 * 1  slow commit at NTS: `nts:latency=40000` for 1.5 s over 10 NTS receipts, the worker's default
 *    HTTP and retry settings (read timeout 15 s, backoff 5 s); the NTS commit window is 60 s instead
 *    of the 10-minute default so the run ends in about two minutes (the mechanism is the same).
 * 2  a worker paused past its lease with calls to send: 200 NTS keys, worker process A with 32 jobs
 *    in flight, NTS answering in 0.3–1.5 s at 25 requests/s per credential, so A holds rows mid-call
 *    and rows claimed but still waiting for a rate slot. The sandbox's clock is moved 2 h on (every
 *    token expires) and A is SIGSTOPped 0.3 s later, so the requests it sent in between are answered
 *    401 while it is stopped: on SIGCONT it would fetch a new token and repeat them. Worker B starts;
 *    A stays stopped 40 s, past its 4 s claim lease and the 24 s a request's fence leases
 *    (3 × (1 s connect + 3 s read) + 2 × 5 s p-retry + 2 s), and B takes its rows over; then A runs
 *    again beside B. Afterwards: NTS receipts per key at the sandbox, what `reconcile` reports, what A
 *    did after SIGCONT (requests refused by its fence, jobs completed as taken-over).
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
const { importDay, runCli, settle, spawnCli, stopChild } = await import('../helpers/pipeline.ts')
const { generateDay, toCsv } = await import('../../src/demo/generate.ts')
const { importTransactions } = await import('../../src/import/import-transactions.ts')
const { mkdtemp, rm, writeFile } = await import('node:fs/promises')
const { tmpdir } = await import('node:os')
const { join } = await import('node:path')
const { randomBytes } = await import('node:crypto')

const args = process.argv.slice(2)
const json = args.includes('--json')
const picked = args.filter((a) => /^\d$/.test(a))
const which = picked.length ? picked : ['1', '2', '3', '6', '7']

type Out = Record<string, unknown>
const print = (n: string, out: Out) =>
  process.stdout.write(json ? `${JSON.stringify({ reproduction: Number(n), ...out })}\n` : `\nreproduction ${n}\n${JSON.stringify(out, null, 2)}\n`)

async function slowCommit(): Promise<Out> {
  const sandbox = await startSandbox({ port: 0 })
  // The worker's defaults for HTTP and retries; only the commit window is shortened (see above).
  const env = await createTestEnv({
    sandboxUrl: sandbox.url,
    env: { HTTP_READ_TIMEOUT_MS: '15000', HTTP_CONNECT_TIMEOUT_MS: '5000', WORKER_BACKOFF_MS: '5000', WORKER_LEASE_MS: '120000', NTS_COMMIT_WINDOW_MS: '60000' },
  })
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
    const done = await eventually(
      async () => {
        const all = await rows()
        return all.every((r) => r.state === 'issued' || r.state === 'skipped' || r.state === 'failed') ? all : undefined
      },
      300_000,
      500,
    )
    const stats = sandbox.stats()
    const attempts = await app
      .db()
      .selectFrom('issuance_attempts')
      .select(['operation', 'outcome'])
      .where(
        'receipt_id',
        'in',
        done.map((r) => r.id),
      )
      .execute()
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

async function frozenWorker(): Promise<Out> {
  let skewMs = 0
  const sandbox = await startSandbox({ port: 0, clock: () => Date.now() + skewMs, faults: 'nts:latency=300-1500' })
  const timing = {
    HTTP_READ_TIMEOUT_MS: '3000',
    HTTP_CONNECT_TIMEOUT_MS: '1000',
    WORKER_LEASE_MS: '4000',
    WORKER_LOCK_MS: '4000',
    WORKER_STALLED_INTERVAL_MS: '2000',
    WORKER_BACKOFF_MS: '200',
    WORKER_ATTEMPTS: '8',
    // Longer than the sandbox's latency: a request A sent commits within it.
    NTS_COMMIT_WINDOW_MS: '5000',
    NTS_MAX_PER_SECOND: '25',
    NTS_MAX_CONCURRENT: '64',
    RECOVERY_INTERVAL_MS: '5000',
    RECOVERY_GRACE_MS: '5000',
  }
  const env = await createTestEnv({ sandboxUrl: sandbox.url, env: timing })
  const dir = await mkdtemp(join(tmpdir(), 'cr-repro2-'))
  const workers: ReturnType<typeof spawnCli>[] = []
  try {
    const app = env.app
    const day = '2026-11-17'
    // 200 NTS keys: the first 200 generated NTS rows that carry a buyer identifier (the others are skipped).
    const gen = generateDay({
      businessDate: day,
      count: 400,
      seed: 2,
      providers: ['nts'],
      idPrefix: 'R2',
      merchants: app.config.merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
    })
    const rows = gen.rows.filter((r) => r.identifier !== '').slice(0, 200)
    await writeFile(join(dir, 'day.csv'), toCsv({ ...gen, rows }))
    const imported = await importTransactions(app.db(), app.config.dataKeys, join(dir, 'day.csv'), { nowMs: Date.now() })
    if (!imported.written) throw new Error(`import failed: ${JSON.stringify(imported.errors.slice(0, 3))}`)
    const s = await settle(app, day)
    const issueRows = () => app.db().selectFrom('receipts').selectAll().where('run_id', '=', s.runId!).where('kind', '=', 'issue').execute()
    const keys = (await issueRows()).filter((r) => r.state !== 'skipped').length

    const wenv = env.env({ ...timing, LOG_LEVEL: 'info', LOG_PRETTY: 'false' })
    const a = spawnCli(['worker', '--concurrency', '32'], wenv)
    workers.push(a)
    const ofA = (r: { locked_by: string | null }) => r.locked_by?.split(':')[1] === String(a.pid)
    // A at work: it holds rows (claimed, some waiting for a rate slot) and has sent some of them.
    await eventually(
      async () => {
        const all = await issueRows()
        const held = all.filter((r) => r.state === 'issuing' && ofA(r))
        return all.filter((r) => r.state === 'issued').length >= 20 && held.length >= 16 && held.filter((r) => r.last_sent_at !== null).length >= 8
      },
      300_000,
      20,
    )
    skewMs = 2 * 3600_000
    await new Promise((r) => setTimeout(r, 300))
    a.kill('SIGSTOP')
    const tStop = Date.now()
    // The other worker: it takes A's rows over once their leases run out.
    const b = spawnCli(['worker', '--concurrency', '8'], wenv)
    workers.push(b)
    const atStop = (await issueRows()).filter((r) => r.state === 'issuing' && ofA(r))
    const issuedAtStop = (await issueRows()).filter((r) => r.state === 'issued').length
    await new Promise((r) => setTimeout(r, 40_000))
    const takenWhileStopped = (await issueRows()).filter((r) => atStop.some((x) => x.id === r.id) && !ofA(r)).length
    const aOutputBefore = a.output().length
    a.kill('SIGCONT')
    const tCont = new Date()
    const done = await eventually(
      async () => {
        const all = await issueRows()
        return all.every((r) => ['issued', 'skipped', 'failed', 'cancelled'].includes(r.state)) ? all : undefined
      },
      600_000,
      500,
    )
    const secondsResumedToTerminal = Math.round((Date.now() - tStop - 40_000) / 1000)
    // A's last requests and outcomes after SIGCONT are in its log by now (it drains before it exits).
    await stopChild(b)
    await stopChild(a)
    const aAfter = a.output().slice(aOutputBefore)

    const held = async () => {
      const { receipts } = (await (await fetch(`${sandbox.url}/_sandbox/receipts?provider=nts`)).json()) as { receipts: { key: string; status: string }[] }
      const per = new Map<string, { all: number; live: number }>()
      for (const r of receipts) {
        const k = per.get(r.key) ?? { all: 0, live: 0 }
        k.all++
        if (r.status === 'issued') k.live++
        per.set(r.key, k)
      }
      const v = [...per.values()]
      return {
        receipts: receipts.length,
        keys: per.size,
        max_per_key: Math.max(0, ...v.map((x) => x.all)),
        max_live_per_key: Math.max(0, ...v.map((x) => x.live)),
        keys_with_two_or_more: v.filter((x) => x.all > 1).length,
      }
    }
    const before = await held()
    const rec = await runCli(['reconcile', '--date', day, '--json'], env.env())
    const recJson =
      rec.code === 0 ? (JSON.parse(rec.stdout) as { checked: number; matched: number; flagged: unknown[]; repaired: unknown[]; duplicates: { outcome: string }[] }) : null
    const after = await held()
    const rep = await runCli(['report', '--run', String(s.runId), '--json'], env.env())
    const repJson = rep.code === 0 ? (JSON.parse(rep.stdout) as { status: string; duplicates: unknown[] }) : null
    const attempts = await app
      .db()
      .selectFrom('issuance_attempts')
      .select(['receipt_id', 'operation', 'outcome', 'worker_id', 'started_at'])
      .where(
        'receipt_id',
        'in',
        done.map((r) => r.id),
      )
      .execute()
    const byA = attempts.filter((x) => x.worker_id.split(':')[1] === String(a.pid))
    // A's log after SIGCONT: one line per job outcome (taken-over, delayed, retry, …).
    const outcomesAfter: Record<string, number> = {}
    const errorsAfter: Record<string, number> = {}
    for (const l of aAfter.split('\n')) {
      const m = /"outcome":"([^"]+)"/.exec(l)
      if (!m || !l.includes('receipt outcome')) continue
      outcomesAfter[m[1]!] = (outcomesAfter[m[1]!] ?? 0) + 1
      const e = /"err":"([^"]+)"/.exec(l)
      if (e) {
        const k = e[1]!.replace(/\d+/g, 'N').slice(0, 90)
        errorsAfter[k] = (errorsAfter[k] ?? 0) + 1
      }
    }
    const heldIds = new Set(atStop.map((r) => Number(r.id)))
    const issueOutcomes: Record<string, number> = {}
    for (const x of attempts.filter((y) => y.operation === 'issue')) issueOutcomes[x.outcome] = (issueOutcomes[x.outcome] ?? 0) + 1
    const stats = sandbox.stats()
    return {
      keys,
      worker_a_at_sigstop: {
        rows_held: atStop.length,
        of_which_sent: atStop.filter((r) => r.last_sent_at !== null).length,
        issue_requests_before: byA.filter((x) => x.operation === 'issue' && x.started_at < tCont).length,
        of_which_never_answered_to_a: byA.filter((x) => x.operation === 'issue' && x.outcome === 'sent').length,
      },
      issued_before_sigstop: issuedAtStop,
      rows_of_a_taken_over_while_stopped: takenWhileStopped,
      worker_a_after_sigcont: {
        issue_requests_sent_for_rows_held_at_sigstop: byA.filter((x) => x.operation === 'issue' && x.started_at >= tCont && heldIds.has(Number(x.receipt_id))).length,
        issue_requests_sent_for_jobs_taken_after_sigcont: byA.filter((x) => x.operation === 'issue' && x.started_at >= tCont && !heldIds.has(Number(x.receipt_id))).length,
        requests_refused_by_fence: (aAfter.match(/call not made/g) ?? []).length,
        job_outcomes: outcomesAfter,
        job_errors: errorsAfter,
        still_alive_until_stopped: a.signalCode === 'SIGTERM' || a.exitCode === 0,
      },
      ledger: {
        issued: done.filter((r) => r.state === 'issued').length,
        failed: done.filter((r) => r.state === 'failed').length,
        open: done.filter((r) => r.state === 'pending' || r.state === 'issuing').length,
      },
      nts_before_reconcile: before,
      reconcile: recJson
        ? {
            checked: recJson.checked,
            matched: recJson.matched,
            flagged: recJson.flagged.length,
            repaired: recJson.repaired.length,
            duplicates: recJson.duplicates.length,
            duplicate_outcomes: recJson.duplicates.map((d) => d.outcome),
          }
        : rec.stderr.slice(-400),
      nts_after_reconcile: after,
      report: repJson ? { status: repJson.status, duplicates: repJson.duplicates.length } : rep.stderr.slice(-400),
      issue_requests: attempts.filter((x) => x.operation === 'issue').length,
      issue_requests_by_outcome: issueOutcomes,
      lookups: attempts.filter((x) => x.operation === 'lookup').length,
      sandbox_nts_requests: stats.providers.nts.requests,
      max_receipts_per_key: stats.max_receipts_per_key,
      max_live_receipts_per_key: stats.max_live_receipts_per_key,
      seconds_sigcont_to_all_terminal: secondsResumedToTerminal,
    }
  } finally {
    for (const w of workers) {
      w.kill('SIGCONT')
      if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL')
    }
    await rm(dir, { recursive: true, force: true })
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
    await writeFile(
      join(dir, 'bad.csv'),
      [header, line('R3-A', 'm-clinic', 'pay-shared'), line('R3-B', 'm-academy', 'pay-shared'), line('R3-LONG', 'm-shop', long), line('R3-OK', 'm-shop', 'pay-r3-ok')].join('\n') +
        '\n',
    )
    const strict = await runCli(['import', join(dir, 'bad.csv'), '--json'], env.env())
    const skipping = await runCli(['import', join(dir, 'bad.csv'), '--skip-invalid', '--json'], env.env())
    // Past import: the same two written straight into the table (an older version, a hand-made INSERT).
    for (const [id, merchant, ref] of [
      ['R3-DIRECT-B', 'm-academy', 'pay-shared'],
      ['R3-DIRECT-LONG', 'm-shop', long],
    ] as const) {
      await app
        .db()
        .insertInto('cash_transactions')
        .values({
          transaction_id: id,
          merchant_id: merchant,
          provider: 'portone-v2',
          payment_ref: ref,
          order_id: null,
          order_name: null,
          method: 'bank_transfer',
          amount: 33_000,
          paid_at: new Date(`${day}T03:00:00Z`),
          business_date: day,
          identifier_type: null,
          identifier_masked: null,
          pii_enc: null,
          data_key_id: null,
          content_hash: `direct-${id}`,
        })
        .execute()
    }
    const settles: { date: string; code: number; rejected?: number; created?: number }[] = []
    for (const d of [day, '2026-11-12', '2026-11-13', '2026-11-14', '2026-11-15']) {
      const r = await runCli(['settle', '--date', d, '--json'], env.env())
      const j = r.code === 0 ? (JSON.parse(r.stdout) as { rejected: number; created: number }) : null
      settles.push({ date: d, code: r.code, rejected: j?.rejected, created: j?.created })
    }
    return {
      import_exit: strict.code,
      import_errors: strict.stderr
        .split('\n')
        .filter((l) => /^line \d+/.test(l))
        .map((l) => l.slice(0, 160)),
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
    return {
      worker_exit: r.code,
      message:
        r.stderr
          .split('\n')
          .find((l) => l.includes('refusing to start'))
          ?.slice(0, 400) ?? r.stderr.slice(-400),
    }
  } finally {
    await env.close()
    await other.drop()
  }
}

async function importContract(): Promise<Out> {
  const env = await createTestEnv()
  const dir = await mkdtemp(join(tmpdir(), 'cr-repro7-'))
  try {
    const row = (over: Record<string, unknown>) =>
      JSON.stringify({ transaction_id: 'R7-OK', merchant_id: 'm-shop', provider: 'payssam', method: 'cash', amount: '5000', paid_at: '2026-11-16T03:00:00+00:00', ...over })
    await writeFile(
      join(dir, 'types.jsonl'),
      [
        row({}),
        row({ transaction_id: 'R7-ARR', amount: [5000] }),
        row({ transaction_id: 'R7-OBJ', order_name: { a: 1 } }),
        row({ transaction_id: 'R7-BOOL', status: true }),
        row({ transaction_id: 'R7-NUL', order_name: 'a\u0000b' }),
      ].join('\n') + '\n',
    )
    await writeFile(
      join(dir, 'nul.csv'),
      'transaction_id,merchant_id,provider,method,amount,paid_at,order_name\nR7-CSV-OK,m-shop,payssam,cash,5000,2026-11-16T03:00:00+00:00,ok\nR7-CSV-NUL,m-shop,payssam,cash,5000,2026-11-16T03:00:00+00:00,a\u0000b\n',
    )
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
const scenarios: Record<string, () => Promise<Out>> = { '1': slowCommit, '2': frozenWorker, '3': badRows, '6': wrongDatabase, '7': importContract }
for (const n of which) {
  const run = scenarios[n]
  if (!run) {
    process.stderr.write(`reproduction ${n}: run it as a chaos phase (see the header of this file)\n`)
    process.exit(2)
  }
  print(n, await run())
}
process.exit(0)
