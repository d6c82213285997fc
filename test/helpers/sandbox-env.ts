/**
 * The hooks a test file with one in-process sandbox and one test environment repeats: both started
 * before the file's tests (the sandbox first: the environment's provider URLs point at it), both
 * closed after them, and — unless `reset` is false — the sandbox emptied before each test, with the
 * faults and rate limits the file starts every test from.
 *
 *   let sandbox: Sandbox
 *   let env: TestEnv
 *   useSandboxEnv({ env: { RECOVERY_INTERVAL_MS: '0' } }, (s, e) => ((sandbox = s), (env = e)))
 *
 * The file keeps its own `sandbox` and `env` bindings (set by `bind` in beforeAll), so its tests
 * read as before.
 */
import { afterAll, beforeAll, beforeEach } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import type { SandboxOptions } from '../../sandbox/state.ts'
import { createTestEnv, type TestEnv } from './test-env.ts'

export interface SandboxEnvOptions {
  /** Options of the sandbox (its port is always a free one). */
  readonly sandbox?: Omit<SandboxOptions, 'port'>
  /** Extra environment of the test environment; a function runs in beforeAll (to write a file first). */
  readonly env?: Record<string, string> | (() => Promise<Record<string, string>>)
  /** Before each test: `sandbox.reset()`, then these faults ('' when not given) … */
  readonly faults?: string
  /** … and, when given, these rate limits. */
  readonly rateLimits?: string
  /** false: no beforeEach at all (the file's tests build on each other's sandbox state). */
  readonly reset?: boolean
  /** Runs before each test, before the reset (a file's own per-test state, such as the sandbox's clock). */
  readonly beforeEach?: () => void
  /** beforeAll's timeout (ms); the vitest config's hookTimeout when not given. */
  readonly setupTimeoutMs?: number
}

export function useSandboxEnv(opts: SandboxEnvOptions, bind: (sandbox: Sandbox, env: TestEnv) => void): void {
  let sandbox: Sandbox | undefined
  let env: TestEnv | undefined
  beforeAll(async () => {
    sandbox = await startSandbox({ ...opts.sandbox, port: 0 })
    const extra = typeof opts.env === 'function' ? await opts.env() : opts.env
    env = await createTestEnv({ sandboxUrl: sandbox.url, env: extra })
    bind(sandbox, env)
  }, opts.setupTimeoutMs)

  afterAll(async () => {
    await env?.close()
    await sandbox?.close()
  })

  if (opts.reset === false) return
  beforeEach(() => {
    opts.beforeEach?.()
    sandbox!.reset()
    sandbox!.setFaults(opts.faults ?? '')
    if (opts.rateLimits !== undefined) sandbox!.setRateLimits(opts.rateLimits)
  })
}
