/**
 * The startup guard: a database and a Redis queue prefix of two different deployments refuse to
 * work together (every job would name a receipt the database does not have); a Redis that lost its
 * keys takes the database's deployment id back (also in a running process, at its next recovery
 * pass); `migrate --adopt-redis` overrides on purpose.
 */
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { databaseDeploymentId } from '../../src/db/deployment.ts'
import { DeploymentMismatchError, deploymentKey } from '../../src/queue/deployment-guard.ts'
import { redisUrl } from '../helpers/env.ts'
import { runCli } from '../helpers/pipeline.ts'
import { createTestDatabase, createTestEnv, type TestEnv } from '../helpers/test-env.ts'

let env: TestEnv
let other: Awaited<ReturnType<typeof createTestDatabase>>
let redis: Redis

beforeAll(async () => {
  env = await createTestEnv()
  other = await createTestDatabase()
  redis = new Redis(redisUrl())
})

afterAll(async () => {
  redis?.disconnect()
  await env?.close()
  await other?.drop()
})

describe('deployment guard', () => {
  it('refuses a second database on the same Redis prefix, naming both, and adopts a flushed prefix', async () => {
    const first = await env.app.checkDeployment()
    expect(await redis.get(deploymentKey(env.prefix))).toBe(first.deploymentId)

    const wrong = env.newApp({ DATABASE_URL: other.url })
    await wrong.prepareDatabase()
    const refused = await wrong.checkDeployment().then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(refused).toBeInstanceOf(DeploymentMismatchError)
    const message = (refused as Error).message
    expect(message).toContain(`database "${other.name}"`)
    expect(message).toContain(`queue prefix "${env.prefix}"`)
    expect(message).toContain(first.deploymentId)
    expect(message).toContain('--adopt-redis')
    // Nothing that enqueues runs past the guard.
    await expect(wrong.settle({ businessDate: '2026-10-01', trigger: 'manual' })).rejects.toThrow(DeploymentMismatchError)
    expect(await redis.get(deploymentKey(env.prefix))).toBe(first.deploymentId)

    // The worker process refuses to start, with the same message.
    const cli = await runCli(['worker'], env.env({ DATABASE_URL: other.url }), 60_000)
    expect(cli.code).toBe(1)
    expect(cli.stderr).toContain('refusing to start')
    expect(cli.stderr).toContain(`database "${other.name}"`)
    expect(cli.stderr).toContain(first.deploymentId)

    // Redis lost its keys (no persistence): the key is absent, and the database's id is written back.
    await redis.del(deploymentKey(env.prefix))
    const again = await env.newApp().checkDeployment()
    expect(again).toEqual({ deploymentId: first.deploymentId, adopted: true })
    expect(await redis.get(deploymentKey(env.prefix))).toBe(first.deploymentId)
  }, 90_000)

  it('migrate --adopt-redis gives the prefix to this database on purpose', async () => {
    const r = await runCli(['migrate', '--adopt-redis', '--json'], env.env({ DATABASE_URL: other.url }), 60_000)
    expect(r.code, r.stderr).toBe(0)
    const otherId = JSON.parse(r.stdout).deployment.deployment_id as string
    expect(await redis.get(deploymentKey(env.prefix))).toBe(otherId)
    expect(otherId).not.toBe((await env.app.checkDeployment()).deploymentId) // memoized from before
    await expect(env.newApp().checkDeployment()).rejects.toThrow(DeploymentMismatchError)
    await expect(env.newApp({ DATABASE_URL: other.url }).checkDeployment()).resolves.toEqual({ deploymentId: otherId, adopted: false })
  }, 90_000)

  it("asks again on every recovery pass: writes back an id Redis lost, stops at another deployment's", async () => {
    const app = env.newApp()
    const mine = await databaseDeploymentId(app.db())
    await redis.set(deploymentKey(env.prefix), mine)
    expect((await app.recover()).ran).toBe(true)

    // Redis loses its data while the process runs: the next pass writes this database's id back and runs.
    await redis.del(deploymentKey(env.prefix))
    expect((await app.recover()).ran).toBe(true)
    expect(await redis.get(deploymentKey(env.prefix))).toBe(mine)

    // Another deployment takes the prefix meanwhile: the pass refuses before it enqueues anything,
    // although this process's start-up check (memoized) had passed.
    await redis.set(deploymentKey(env.prefix), '00000000-0000-4000-8000-000000000000')
    await expect(app.checkDeployment()).resolves.toMatchObject({ deploymentId: mine })
    await expect(app.recover()).rejects.toThrow(DeploymentMismatchError)
    await redis.set(deploymentKey(env.prefix), mine)
  }, 90_000)
})
