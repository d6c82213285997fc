/**
 * Shared benchmark plumbing: services, a fresh database per scenario, the sandbox and workers as
 * separate OS processes (like production), process RSS sampling, Redis memory sampling, and the
 * baselines every scenario measures in the same run (the machine's speed drifts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { writeFile, mkdtemp } from 'node:fs/promises'
import { setPriority, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pg from 'pg'
import { Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { from as copyFrom } from 'pg-copy-streams'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { createHash } from 'node:crypto'
import type { MerchantConfig } from '../src/config.ts'
import { loadDemoConfig } from '../src/demo/defaults.ts'
import { encryptPii } from '../src/crypto/pii.ts'
import { generateDay, mulberry32 } from '../src/demo/generate.ts'
import { freePort, recreateDatabase } from '../src/demo/infra.ts'
import { businessDateOf, maskIdentifier, parseIdentifier } from '../src/domain/index.ts'
import { createRanker, createReceiptsQueue } from '../src/queue/queues.ts'

export const ROOT = resolve(import.meta.dirname, '..')

export interface Services {
  readonly pgServer: string
  readonly redisUrl: string
}

export { recreateDatabase }

/**
 * A pg client for the bench's own reads. A connection Postgres ends (another session's
 * pg_terminate_backend on a shared server) is an 'error' event, which without a listener ends the
 * whole bench; with one, the next query on it fails and that scenario reports the error.
 */
export function benchClient(databaseUrl: string): pg.Client {
  const c = new pg.Client({ connectionString: databaseUrl })
  c.on('error', (err) => process.stderr.write(`[bench] a Postgres connection of the bench was ended: ${err.message}\n`))
  return c
}

/**
 * The database every scenario recreates: one per namespace (BENCH_DB_NS, else TEST_DB_NS), so two
 * bench runs on one Postgres server (several checkouts) do not drop each other's database.
 */
export function benchDatabaseName(): string {
  const ns = (process.env.BENCH_DB_NS ?? process.env.TEST_DB_NS ?? '').toLowerCase().replace(/[^a-z0-9]/g, '')
  return ns ? `cash_receipts_bench_${ns}` : 'cash_receipts_bench'
}

/** Environment for CLI child processes of one scenario. */
export function scenarioEnv(databaseUrl: string, redisUrl: string, prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'development',
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    LOG_PRETTY: 'false',
    ...extra,
  }
}

/**
 * Node flags for every process a scenario starts, e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"
 * (Node refuses --cpu-prof in NODE_OPTIONS).
 */
const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean)

/**
 * The CLI as production runs it (the Dockerfile's `npm run build`, then node on dist/): compiled once
 * per bench run, so no process spends its first seconds compiling TypeScript through tsx — four
 * workers doing that at once on two cores starved the first seconds of every scenario — and RSS is
 * the program's, not a loader's.
 */
const CLI_ROOT = process.env.BENCH_CLI_ROOT ? resolve(process.env.BENCH_CLI_ROOT) : ROOT
const CLI = join(CLI_ROOT, 'dist', 'src', 'cli.js')

/**
 * Builds the CLI under test: this checkout's, or with BENCH_CLI_ROOT another checkout's (an older
 * commit's worktree, to compare builds with the same bench: `git worktree add /tmp/old <commit>`).
 */
export function buildCli(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(CLI_ROOT, 'tsconfig.build.json')], { cwd: CLI_ROOT, stdio: 'inherit' })
  if (r.status !== 0) throw new Error('npm run build failed: the benchmark runs the compiled CLI')
}

/** Every process a scenario started: killed if the bench itself exits early, so none keeps loading the machine. */
const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
})

/** The compiled CLI as a child process, tracked so an early exit of the bench kills it. */
function startCli(args: string[], env: Record<string, string>, stderr: 'ignore' | 'inherit'): ChildProcess {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    cwd: CLI_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', stderr],
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/**
 * A TypeScript script of bench/ as its own process (through tsx's loader), tracked like the CLI's.
 * Resolves once it prints `ready` on stdout.
 */
export async function spawnScript(script: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join(ROOT, 'bench', script)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.add(child)
  child.once('exit', () => children.delete(child))
  await new Promise<void>((res, rej) => {
    let out = ''
    const onData = (d: Buffer) => {
      out += d
      if (out.includes('ready\n')) {
        child.stdout!.off('data', onData)
        child.stdout!.resume()
        res()
      }
    }
    child.stdout!.on('data', onData)
    child.once('exit', (code) => rej(new Error(`${script} exited with ${code} before it was ready`)))
  })
  return child
}

/** Changes a running sandbox's faults (`none` lifts them): the fault a scenario injects, then lifts. */
export async function setSandboxFaults(url: string, spec: string): Promise<void> {
  const r = await fetch(`${url}/_sandbox/faults`, { method: 'POST', body: spec })
  if (!r.ok) throw new Error(`sandbox refused the fault spec ${spec}: ${await r.text()}`)
}

/** Forgets every receipt the sandbox holds and its counters (`POST /_sandbox/reset`). */
export async function resetSandbox(url: string): Promise<void> {
  const r = await fetch(`${url}/_sandbox/reset`, { method: 'POST' })
  if (!r.ok) throw new Error(`sandbox reset failed: ${r.status}`)
}

export function spawnCli(args: string[], env: Record<string, string>, opts: { quiet?: boolean } = {}): ChildProcess {
  const child = startCli(args, env, opts.quiet ? 'ignore' : 'inherit')
  child.stdout?.resume()
  return child
}

/**
 * Runs a CLI command to its end: its exit code, stdout, peak RSS and CPU seconds (user + system,
 * sampled every 100 ms like the RSS, so the last ≤ 100 ms may be missing: CPU time, unlike wall time,
 * does not grow when other processes load the machine).
 */
export function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; peakRssMb: number; cpuSeconds: number }> {
  return new Promise((res, rej) => {
    const child = startCli(args, env, 'inherit')
    let stdout = ''
    child.stdout!.on('data', (d) => (stdout += d))
    let peak = 0
    let cpu = 0
    const timer = setInterval(() => {
      peak = Math.max(peak, rssMb(child.pid!))
      cpu = Math.max(cpu, cpuSeconds(child.pid!))
    }, 100)
    child.on('error', rej)
    child.on('exit', (code) => {
      clearInterval(timer)
      res({ code: code ?? -1, stdout, peakRssMb: peak, cpuSeconds: cpu })
    })
  })
}

/** CPU seconds (user + system) a live process has used so far (Linux /proc), 0 when gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th of them.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100 // USER_HZ is 100 on Linux
  } catch {
    return 0
  }
}

/** CPU seconds used so far by every PostgreSQL server process (postmaster and backends) on this machine. */
export function postgresCpuSeconds(): number {
  let total = 0
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres') total += cpuSeconds(Number(pid))
    } catch {
      // gone meanwhile
    }
  }
  return total
}

/**
 * CPU seconds used by the Postgres backends serving one database, sampled every 250 ms between
 * start() and stop(): each backend's growth from its first sample to its last. On a machine shared
 * with other Postgres clients the server-wide sum (postgresCpuSeconds) counts their work too, and a
 * backend that exits meanwhile takes its CPU out of that sum (negative figures); per backend of the
 * scenario's own database neither happens. Background processes (WAL writer, checkpointer) and
 * backends living under 250 ms are not counted.
 */
export function databaseCpuMeter(databaseUrl: string) {
  const c = benchClient(databaseUrl)
  const first = new Map<number, number>()
  const last = new Map<number, number>()
  let timer: NodeJS.Timeout | undefined
  let busy = false
  const sample = async () => {
    if (busy) return
    busy = true
    try {
      const r = await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')
      for (const { pid } of r.rows) {
        const s = cpuSeconds(pid)
        if (s === 0) continue
        if (!first.has(pid)) first.set(pid, s)
        last.set(pid, s)
      }
    } catch {
      // a missed sample
    } finally {
      busy = false
    }
  }
  return {
    async start() {
      await c.connect()
      await sample()
      timer = setInterval(() => void sample(), 250)
    },
    async stop(): Promise<number> {
      clearInterval(timer)
      await sample()
      await c.end().catch(() => {})
      let total = 0
      for (const [pid, s] of last) total += s - first.get(pid)!
      return total
    },
  }
}

/**
 * CPU used by the scenario's processes between start() and stop(), per unit of work, in ms: where the
 * machine's time goes (workers, sandbox, Redis, Postgres). Postgres: the backends of `databaseUrl`
 * when given (see databaseCpuMeter), else every Postgres process on the machine.
 */
export function cpuMeter(redis: Redis, workerPids: () => number[], sandboxPid: number | undefined, databaseUrl?: string) {
  const dbMeter = databaseUrl ? databaseCpuMeter(databaseUrl) : undefined
  const read = async () => ({
    workers: workerPids().reduce((a, pid) => a + cpuSeconds(pid), 0),
    sandbox: sandboxPid ? cpuSeconds(sandboxPid) : 0,
    redis: await redisCpuSeconds(redis),
    postgres: dbMeter ? 0 : postgresCpuSeconds(),
  })
  let before: Awaited<ReturnType<typeof read>> | undefined
  return {
    async start() {
      before = await read()
      await dbMeter?.start()
    },
    async stop(units: number, unit: string) {
      const now = await read()
      if (dbMeter) now.postgres = await dbMeter.stop()
      const per = (k: keyof typeof now) => Math.round(((now[k] - before![k]) * 1000 * 1000) / Math.max(1, units)) / 1000
      return {
        [`worker_cpu_ms_per_${unit}`]: per('workers'),
        [`sandbox_cpu_ms_per_${unit}`]: per('sandbox'),
        [`redis_cpu_ms_per_${unit}`]: per('redis'),
        // the scenario database's backends, or every postgres process on the machine (other clients' work included)
        [`postgres_cpu_ms_per_${unit}`]: per('postgres'),
      }
    },
  }
}

/** CPU seconds the Redis server has used so far (INFO cpu). */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu')
  const get = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0)
  return get('used_cpu_sys') + get('used_cpu_user')
}

/** Resident set size of a process in MB (Linux /proc), 0 when gone. */
export function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const m = /VmRSS:\s+(\d+) kB/.exec(status)
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

export async function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>((r) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.once('exit', () => {
      clearTimeout(t)
      r()
    })
    child.kill(signal)
  })
}

/**
 * The sandbox as a separate process. `priority` (a nice value, lower runs first) stands in for the
 * provider's own hardware where arrival times are what is measured: on two shared cores the
 * scheduler otherwise parks the sandbox for tens of ms behind our workers, and the requests that
 * queue meanwhile are all stamped at once when it runs again — a burst the senders never made.
 * Lowering a nice value needs CAP_SYS_NICE; without it the sandbox runs at the default and
 * `priority` in the result says so.
 */
export async function startSandboxProcess(
  env: Record<string, string>,
  args: string[] = [],
  opts: { priority?: number } = {},
): Promise<{ url: string; child: ChildProcess; priority: number }> {
  const port = await freePort()
  const child = spawnCli(['sandbox', '--port', String(port), ...args], env, { quiet: true })
  let priority = 0
  if (opts.priority !== undefined) {
    try {
      setPriority(child.pid!, opts.priority)
      priority = opts.priority
    } catch {
      // not permitted here: the default priority, reported as 0
    }
  }
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${url}/_sandbox/stats`)
      if (r.ok) return { url, child, priority }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('sandbox process did not start')
}

export async function sandboxStats(url: string): Promise<{
  providers: Record<string, { requests: number; issued: number; cancelled: number; duplicates_rejected: number; rate_limited: number }>
  max_live_receipts_per_key: number
  max_receipts_per_key: number
}> {
  const r = await fetch(`${url}/_sandbox/stats`)
  return (await r.json()) as never
}

/**
 * Baselines: BullMQ addBulk and a no-op worker on the same Redis, same machine, same minute. Each is
 * measured after a warm-up pass of its own (a fresh process runs its first jobs markedly slower while
 * V8 compiles BullMQ's and ioredis' hot paths), so a ratio compares steady states.
 */
export async function measureBaselines(redisUrl: string, jobs: number): Promise<{ addBulkJobsPerSec: number; noopWorkerJobsPerSec: number }> {
  await baselinePass(redisUrl, Math.min(jobs, 10_000))
  return baselinePass(redisUrl, jobs)
}

async function baselinePass(redisUrl: string, jobs: number): Promise<{ addBulkJobsPerSec: number; noopWorkerJobsPerSec: number }> {
  const prefix = `bench-base-${Date.now().toString(36)}`
  const conn = new Redis(redisUrl, { maxRetriesPerRequest: null })
  const queue = new Queue('noop', { connection: conn as never, prefix })
  try {
    const t0 = performance.now()
    for (let i = 0; i < jobs; i += 1000) {
      await queue.addBulk(
        Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => ({ name: 'noop', data: { receiptId: i + k, businessDate: '2026-11-21' }, opts: { removeOnComplete: true } })),
      )
    }
    const addBulkJobsPerSec = jobs / ((performance.now() - t0) / 1000)
    let done = 0
    const t1 = performance.now()
    const finished = new Promise<void>((r) => {
      const worker = new Worker('noop', async () => {}, { connection: new Redis(redisUrl, { maxRetriesPerRequest: null }) as never, prefix, concurrency: 50 })
      worker.on('completed', () => {
        if (++done === jobs) void worker.close().then(() => r())
      })
    })
    await finished
    const noopWorkerJobsPerSec = jobs / ((performance.now() - t1) / 1000)
    return { addBulkJobsPerSec, noopWorkerJobsPerSec }
  } finally {
    await queue.obliterate({ force: true }).catch(() => {})
    await queue.close()
    conn.disconnect()
  }
}

/**
 * addBulk of jobs shaped as settle's (src/jobs/settle.ts): its job data (receipt id, date, merchant,
 * provider), a deterministic job id, a priority from the settle ranker over 50 merchants × 3
 * providers, the receipts queue's default options (attempts, backoff, retention), in chunks of
 * `chunk` — what settle hands BullMQ for each receipt, without its Postgres work. The plain baseline
 * (measureBaselines) adds smaller jobs with none of these: in Redis a prioritized job with an id of
 * its own costs more (a ZADD, a counter, an EXISTS) than a plain one. After a warm-up pass, like it.
 */
export async function measureSettleShapedAddBulk(redisUrl: string, jobs: number, chunk: number): Promise<number> {
  const pass = async (n: number) => {
    const prefix = `bench-shape-${Date.now().toString(36)}`
    const conn = new Redis(redisUrl, { maxRetriesPerRequest: null })
    const queue = createReceiptsQueue(conn, prefix, 1_000)
    const rank = createRanker()
    const providers = ['portone', 'portone-v2', 'payssam'] as const
    try {
      const t0 = performance.now()
      for (let i = 0; i < n; i += chunk) {
        await queue.addBulk(
          Array.from({ length: Math.min(chunk, n - i) }, (_, k) => {
            const id = i + k + 1
            const merchantId = `bm${String(id % 50).padStart(4, '0')}`
            const provider = providers[id % 3]!
            return {
              name: 'issue-receipt',
              data: { receiptId: id, businessDate: '2026-11-21', merchantId, provider },
              opts: { jobId: `issue-${id}`, priority: rank(merchantId, provider) },
            }
          }),
        )
      }
      return n / ((performance.now() - t0) / 1000)
    } finally {
      await queue.obliterate({ force: true }).catch(() => {})
      await queue.close()
      conn.disconnect()
    }
  }
  await pass(Math.min(jobs, 10_000))
  return pass(jobs)
}

/**
 * N merchants with sandbox credentials, written to a MERCHANTS_FILE. `limits` applies to every
 * credential, `limitsOf(i)` (when given) to merchant i's instead; `mandatory` makes every merchant a
 * mandatory issuer (else every other one is).
 */
export async function writeMerchantsFile(
  n: number,
  allLimits?: Record<string, unknown>,
  opts: { limitsOf?: (i: number) => Record<string, unknown> | undefined; mandatory?: boolean } = {},
): Promise<{ file: string; merchants: MerchantConfig[] }> {
  const base = loadDemoConfig({}).merchants[0]!
  const merchants: MerchantConfig[] = Array.from({ length: n }, (_, i) => {
    const id = `bm${String(i).padStart(4, '0')}`
    const limits = opts.limitsOf ? opts.limitsOf(i) : allLimits
    return {
      ...base,
      id,
      name: `벤치 가맹점 ${i}`,
      mandatoryIssuer: opts.mandatory ?? i % 2 === 0,
      providers: {
        portone: { impKey: `imp_key_${id}`, impSecret: `imp_secret_${id}`, channelKey: `channel-${id}`, ...(limits ? { limits } : {}) },
        'portone-v2': { apiSecret: `v2-secret-${id}`, channelKey: `channel-v2-${id}`, storeId: `store-${id}`, ...(limits ? { limits } : {}) },
        payssam: { apikey: `apikey${id}`, member: `member-${id}`, merchant: `shop-${id}`, ...(limits ? { limits } : {}) },
        nts: { clientId: `nts-${id}`, clientSecret: `nts-secret-${id}`, ...(limits ? { limits } : {}) },
      },
    } as MerchantConfig
  })
  const dir = await mkdtemp(join(tmpdir(), 'cr-bench-'))
  const file = join(dir, 'merchants.json')
  await writeFile(file, JSON.stringify(merchants))
  return { file, merchants }
}

const COLUMNS = [
  'transaction_id',
  'merchant_id',
  'provider',
  'payment_ref',
  'order_id',
  'order_name',
  'method',
  'amount',
  'tax_free_amount',
  'service_fee',
  'paid_at',
  'business_date',
  'identifier_type',
  'identifier_masked',
  'pii_enc',
  'data_key_id',
  'purpose',
  'status',
  'refunded_amount',
  'content_hash',
] as const

/** The providers writeMerchantsFile gives every bench merchant credentials for. */
const BENCH_PROVIDERS = ['portone', 'portone-v2', 'payssam', 'nts'] as const

/**
 * Loads `count` generated transactions with COPY (chunks of 1,000 lines), identifiers encrypted as the
 * importer would. Streams: memory stays flat whatever the count.
 */
export async function copyTransactions(
  databaseUrl: string,
  opts: {
    businessDate: string
    count: number
    merchants: readonly { id: string; mandatoryIssuer: boolean }[]
    providers?: readonly ('portone' | 'portone-v2' | 'payssam' | 'nts' | 'toss' | 'popbill')[]
    noPortonePayments?: boolean
    /** Transaction ids start with it (default `B`): settle reads a day in transaction-id order. */
    idPrefix?: string
    /** Rows grouped by merchant, this many each in turn (default: the merchants take turns row by row). */
    perMerchant?: number
  },
): Promise<{ rows: number; seconds: number }> {
  const keys = loadDemoConfig({}).dataKeys
  const client = benchClient(databaseUrl)
  await client.connect()
  const chunk = 10_000
  const t0 = performance.now()
  const esc = (v: string | null) => (v === null || v === '' ? '' : /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v)
  async function* lines() {
    for (let start = 0; start < opts.count; start += chunk) {
      const day = generateDay({
        businessDate: opts.businessDate,
        count: Math.min(chunk, opts.count - start),
        merchants: opts.merchants,
        // The providers the bench's merchants have credentials for (writeMerchantsFile): a generated
        // day also holds Toss and Popbill rows, which these merchants could only fail.
        providers: opts.providers ?? BENCH_PROVIDERS,
        seed: 1000 + start,
        idPrefix: `${opts.idPrefix ?? 'B'}${String(start / chunk).padStart(3, '0')}`,
      })
      let out = ''
      for (const [k, r] of day.rows.entries()) {
        if (opts.perMerchant) r.merchant_id = opts.merchants[Math.floor((start + k) / opts.perMerchant) % opts.merchants.length]!.id
        const paymentRef = opts.noPortonePayments && r.provider === 'portone' ? '' : r.payment_ref!
        const method = opts.noPortonePayments && r.method === 'naverpay' ? 'bank_transfer' : r.method!
        const id = r.identifier ? parseIdentifier(r.identifier, (r.identifier_type || undefined) as never) : null
        const ident = id && id.ok ? id.value : null
        const enc = ident ? encryptPii({ identifier: ident.digits }, keys, r.transaction_id!) : null
        const values = [
          r.transaction_id!,
          r.merchant_id!,
          r.provider!,
          paymentRef,
          r.order_id!,
          r.order_name!,
          method,
          r.amount!,
          r.tax_free_amount!,
          r.service_fee!,
          r.paid_at!,
          businessDateOf(new Date(r.paid_at!)),
          ident?.type ?? '',
          ident ? maskIdentifier(ident.digits, ident.type) : '',
          enc?.value ?? '',
          enc?.keyId ?? '',
          ident?.type === 'business' ? 'expense' : 'deduction',
          'completed',
          '0',
          createHash('sha1').update(r.transaction_id!).digest('base64url'),
        ]
        out += values.map((v) => esc(v)).join(',') + '\n'
      }
      yield out
    }
  }
  try {
    const stream = client.query(copyFrom(`COPY cash_transactions (${COLUMNS.join(',')}) FROM STDIN WITH (FORMAT csv)`))
    await pipeline(Readable.from(lines()), stream)
  } finally {
    await client.end()
  }
  return { rows: opts.count, seconds: (performance.now() - t0) / 1000 }
}

export async function waitFor(fn: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await fn()) return true
    await new Promise((r) => setTimeout(r, everyMs))
  }
  return false
}

export function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

export { mulberry32 }
