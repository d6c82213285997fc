/**
 * `npm run demo` interrupted (issue 22): SIGTERM or Ctrl-C stops the redis-server it started, removes
 * its temporary directories and drops its database, whose name is its own (two demos on one server
 * never drop each other's).
 */
import { readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, redisAnswers } from '../../src/demo/infra.ts'
import { adminUrl } from '../helpers/env.ts'
import { spawnCli } from '../helpers/pipeline.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'

let env: TestEnv
beforeAll(async () => {
  env = await createTestEnv()
})
afterAll(async () => {
  await env?.close()
})

async function databaseExists(name: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: adminUrl() })
  await c.connect()
  try {
    return (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1
  } finally {
    await c.end()
  }
}

const demoDirs = async () => (await readdir(tmpdir())).filter((d) => /^cash-receipts-(redis|demo|pg)-/.test(d))

describe('demo interrupted', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`on ${signal} stops the redis-server it started, removes its temp dirs and drops its own database`, async () => {
      const before = new Set(await demoDirs())
      // Nothing answers on this port: the demo starts its own redis-server.
      const demo = spawnCli(['demo', '--transactions', '2000'], env.env({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` }))
      const exited = new Promise<number | null>((res) => demo.on('exit', (code) => res(code)))
      const started = await eventually(async () => /database (cash_receipts_demo_\w+) migrated/.exec(demo.output()), 120_000, 200)
      const redisUrl = /Redis: redis-server at (redis:\/\/[\d.:]+)/.exec(demo.output())![1]!
      const dbName = started[1]!
      expect(await redisAnswers(redisUrl)).toBe(true)
      expect(await databaseExists(dbName)).toBe(true)

      demo.kill(signal)
      expect(await exited, demo.output()).toBe(signal === 'SIGINT' ? 130 : 143)
      expect(demo.output()).toContain(`${signal}: stopping what the demo started`)
      expect(await redisAnswers(redisUrl)).toBe(false)
      expect(await databaseExists(dbName)).toBe(false)
      expect((await demoDirs()).filter((d) => !before.has(d))).toEqual([])
    }, 180_000)
  }

  it('names its database uniquely per run', async () => {
    const { demoDatabaseName } = await import('../../src/demo/demo.ts')
    const a = demoDatabaseName(1_000)
    const b = demoDatabaseName(2_000)
    expect(a).toMatch(/^cash_receipts_demo_\w+$/)
    expect(a).not.toBe(b)
  })
})
