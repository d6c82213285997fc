/**
 * The chaos harness in quick mode, part of `npm test`: every fault phase (worker processes SIGKILLed,
 * a slow commit at NTS past the read timeout, a worker SIGSTOPped past its lease, a Redis restart, a
 * Redis lost without persistence, Postgres connections terminated again and again, bad rows in the
 * day) with sandbox faults throughout — and afterwards every check holds.
 * Also scans everything the run left behind (worker logs, every Redis key and value, every text
 * column in Postgres) for the raw identifiers it imported.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import pg from 'pg'
import { Redis } from 'ioredis'
import { QUICK, runChaos, formatChaos, type ChaosResult } from '../chaos/harness.ts'
import { generateDay } from '../../src/demo/generate.ts'
import { loadDemoConfig } from '../../src/demo/defaults.ts'

let result: ChaosResult

beforeAll(async () => {
  // The harness's log (each phase as it starts, from the first worker at work) goes to stderr, so a
  // run that fails on a loaded CI machine shows where its time went.
  result = await runChaos({ ...QUICK, seed: 7, log: (m) => process.stderr.write(`[chaos-quick] ${m}\n`) })
  // The harness names a phase that hung itself (start-up, warm-up, drain, its overall cap); the
  // hook's timeout, beyond that cap, is only a backstop.
}, QUICK.timeoutMs + 120_000)

afterAll(async () => {
  await result?.cleanup()
})

it('keeps the one rule under faults: nothing issued twice, nothing lost', () => {
  expect(result.ok, formatChaos(result)).toBe(true)
  // Every phase ran.
  expect(result.figures.worker_kills).toBeGreaterThan(0)
  expect(result.figures.slow_commit_nts_requests).toBeGreaterThan(0)
  expect(result.figures.sigstop_ms).toBeGreaterThan(19_500)
  expect(result.figures.redis_restarts).toBe(1)
  expect(result.figures.redis_lost).toBe(1)
  expect(result.figures.pg_backends_terminated).toBeGreaterThan(0)
  expect(result.figures.import_rejected).toBeGreaterThan(0)
  expect(result.figures.settle_rejected).toBe(2)
  expect(result.figures.worker_unexpected_exits).toBe(0)
  // Popbill bulk: its first submits committed and then timed out; the check "every Popbill bulk
  // batch done" (none left open or submitted) is part of result.ok.
  expect(result.figures.popbill_bulk_submits_unanswered).toBeGreaterThanOrEqual(1)
  expect(result.figures.popbill_batches_done).toBeGreaterThan(0)
})

it('leaves no raw identifier in logs, Redis or any Postgres text column', async () => {
  // The same generator and seed the harness used: these are the identifiers it imported.
  const day = generateDay({
    businessDate: '2026-11-20',
    count: QUICK.transactions,
    seed: 7,
    merchants: loadDemoConfig({}).merchants.map((m) => ({ id: m.id, mandatoryIssuer: m.mandatoryIssuer })),
    idPrefix: 'CH',
  })
  const secrets = [...new Set(day.rows.map((r) => r.identifier).filter((x): x is string => Boolean(x)))]
  expect(secrets.length).toBeGreaterThan(50)
  const found = (haystack: string) => secrets.filter((s) => haystack.includes(s))

  expect(found(result.workerOutput)).toEqual([])

  const redis = new Redis(result.redisUrl)
  let dump = ''
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'COUNT', 1000)
      cursor = next
      for (const key of keys) {
        dump += key + '\n'
        const type = await redis.type(key)
        if (type === 'string') dump += (await redis.get(key)) ?? ''
        else if (type === 'hash') dump += JSON.stringify(await redis.hgetall(key))
        else if (type === 'list') dump += JSON.stringify(await redis.lrange(key, 0, -1))
        else if (type === 'set') dump += JSON.stringify(await redis.smembers(key))
        else if (type === 'zset') dump += JSON.stringify(await redis.zrange(key, 0, -1))
        else if (type === 'stream') dump += JSON.stringify(await redis.xrange(key, '-', '+'))
      }
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
  expect(dump.length).toBeGreaterThan(1000)
  expect(found(dump)).toEqual([])

  const c = new pg.Client({ connectionString: result.databaseUrl })
  await c.connect()
  try {
    const cols = await c.query<{ table_name: string; column_name: string }>(
      `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb')`,
    )
    expect(cols.rows.length).toBeGreaterThan(10)
    for (const { table_name, column_name } of cols.rows) {
      const rows = await c.query(`SELECT string_agg(${pg.escapeIdentifier(column_name)}::text, ' ') AS s FROM ${pg.escapeIdentifier(table_name)}`)
      expect(found(rows.rows[0].s ?? ''), `${table_name}.${column_name}`).toEqual([])
    }
  } finally {
    await c.end()
  }
})
