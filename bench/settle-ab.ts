/**
 * Settle alone, several builds on one generated day: `tsx bench/settle-ab.ts <rows> <rounds> <rootA> <rootB> …`
 * (each root a checkout; its CLI is built here first). Each build gets its own copy of the day (a
 * database made from one template) and its own queue prefix. Per run the receipts and the queue are
 * emptied, then `settle` runs with SETTLE_MAX_WAITING above the day (no drainer, no backpressure stop)
 * and its own CPU per row, its Postgres backends' and Redis's (the whole server's) CPU per row, wall
 * time and peak RSS are printed. The builds run one after the other within a round, or with
 * AB_PARALLEL=1 at the same time: on a machine loaded by others, a pair run side by side meets the same
 * load, so which finishes first says more than two walls measured minutes apart.
 */
import { spawn, spawnSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import pg from 'pg'
import { copyTransactions, cpuSeconds, databaseCpuMeter, recreateDatabase, redisCpuSeconds, rssMb, scenarioEnv, writeMerchantsFile, ROOT } from './lib.ts'

const [rowsArg, roundsArg, ...roots] = process.argv.slice(2)
const rows = Number(rowsArg ?? 100_000)
const rounds = Number(roundsArg ?? 2)
const parallel = process.env.AB_PARALLEL === '1'
const ns = (process.env.TEST_DB_NS ?? 'ab').toLowerCase().replace(/[^a-z0-9]/g, '')
const pgServer = process.env.BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432'
const redisUrl = process.env.BENCH_REDIS ?? 'redis://127.0.0.1:6379'
const chunk = process.env.SETTLE_CHUNK_SIZE ?? '2000'

for (const root of new Set(roots)) {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(resolve(root), 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) throw new Error(`build failed in ${root}`)
}
const redis = new Redis(redisUrl)
async function deletePrefix(prefix: string) {
  for (let cursor = '0'; ;) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
    if (keys.length) await redis.del(...keys)
    if ((cursor = next) === '0') break
  }
}
const { file, merchants } = await writeMerchantsFile(50)
const template = `cash_receipts_ab_${ns}_t`
const templateUrl = await recreateDatabase(pgServer, template)
const slots = roots.map((root, i) => ({ root, db: `cash_receipts_ab_${ns}_${i}`, prefix: `ab${ns}${i}` }))

function cli(root: string, env: Record<string, string>, args: string[]) {
  return new Promise<{ code: number; out: string; cpu: number; rss: number }>((res, rej) => {
    const child = spawn(process.execPath, [...(process.env.AB_NODE_ARGS ?? '').split(/\s+/).filter(Boolean), join(resolve(root), 'dist', 'src', 'cli.js'), ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    let out = ''
    let cpu = 0
    let rss = 0
    child.stdout.on('data', (d) => (out += d))
    const t = setInterval(() => {
      cpu = Math.max(cpu, cpuSeconds(child.pid!))
      rss = Math.max(rss, rssMb(child.pid!))
    }, 50)
    child.on('error', rej)
    child.on('exit', (code) => {
      clearInterval(t)
      res({ code: code ?? -1, out, cpu, rss })
    })
  })
}
const envOf = (db: string, prefix: string) => scenarioEnv(db, redisUrl, prefix, { MERCHANTS_FILE: file, SETTLE_MAX_WAITING: String(rows * 2), SETTLE_CHUNK_SIZE: chunk })

// The day, loaded once into the template (migrated by the first root's CLI), then copied per build.
await deletePrefix(`ab${ns}t`)
const migrated = await cli(roots[0]!, envOf(templateUrl, `ab${ns}t`), ['migrate'])
if (migrated.code !== 0) throw new Error('migrate failed')
await copyTransactions(templateUrl, { businessDate: '2026-11-21', count: rows, merchants, noPortonePayments: true })
const admin = new pg.Client({ connectionString: `${pgServer}/postgres` })
await admin.connect()
await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [template])
for (const s of slots) {
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(s.db)} WITH (FORCE)`)
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(s.db)} TEMPLATE ${pg.escapeIdentifier(template)}`)
}
await admin.end()

async function runOne(s: (typeof slots)[number], round: number) {
  const url = `${pgServer}/${s.db}`
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  await c.query('TRUNCATE receipts, settlement_runs RESTART IDENTITY CASCADE')
  await c.query('VACUUM ANALYZE receipts')
  await c.query('ANALYZE cash_transactions')
  await c.end()
  // A copied database keeps the template's deployment id: its queue prefix is claimed anew each run.
  await deletePrefix(s.prefix)
  const env = envOf(url, s.prefix)
  await cli(s.root, env, ['migrate', '--adopt-redis'])
  return async () => {
    const meter = databaseCpuMeter(url)
    await meter.start()
    const redisBefore = await redisCpuSeconds(redis)
    const load = loadavg()[0]!
    const t0 = performance.now()
    const r = await cli(s.root, env, ['settle', '--date', '2026-11-21', '--json'])
    const wall = (performance.now() - t0) / 1000
    const pgCpu = await meter.stop()
    const redisCpu = (await redisCpuSeconds(redis)) - redisBefore
    const summary = r.code === 0 ? JSON.parse(r.out) : { enqueued: -1 }
    const us = (x: number) => Math.round((x * 1e7) / rows) / 10
    const q = new Queue('receipts', { connection: new Redis(redisUrl, { maxRetriesPerRequest: null }) as never, prefix: s.prefix })
    await q.obliterate({ force: true })
    await q.close()
    console.log(
      JSON.stringify({
        root: s.root,
        round,
        code: r.code,
        enqueued: summary.enqueued,
        wall: Math.round(wall * 10) / 10,
        per_s: Math.round(summary.enqueued / wall),
        settle_us: us(r.cpu),
        pg_us: us(pgCpu),
        redis_us: us(redisCpu),
        rss: Math.round(r.rss),
        load: load.toFixed(1),
      }),
    )
  }
}
for (let round = 0; round < rounds; round++) {
  // Alternate which build starts first from round to round.
  const order = round % 2 === 0 ? slots : [...slots].reverse()
  if (parallel) {
    const starts = []
    for (const s of order) starts.push(await runOne(s, round))
    await Promise.all(starts.map((go) => go()))
  } else {
    for (const s of order) await (await runOne(s, round))()
  }
}
for (const s of slots) await deletePrefix(s.prefix)
redis.disconnect()
process.exit(0)
