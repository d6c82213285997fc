/**
 * The ceiling's second baseline: the at-least-once worker a user would write instead of this
 * service. A plain BullMQ worker makes the same provider call to the same sandbox through the same
 * adapter and transport, and writes one row per job with one INSERT: no durable intent before the
 * call, no lookup after an unknown outcome, no ledger, no throttle. A failed call throws, and BullMQ
 * retries it (at least once: a lost answer can issue twice, which is what the pipeline prevents).
 *
 * Run by the bench as its own process (`node --import tsx bench/naive-worker.ts`), with the
 * scenario's environment plus NAIVE_QUEUE and NAIVE_CONCURRENCY. Prints `ready` once listening.
 */
import pg from 'pg'
import { Worker } from 'bullmq'
import { Redis } from 'ioredis'
import { loadDemoConfig } from '../src/demo/defaults.ts'
import { decryptPii } from '../src/crypto/pii.ts'
import { createHttpClient } from '../src/providers/http.ts'
import { createProvider } from '../src/providers/registry.ts'
import type { CashReceiptProvider, IssueRequest } from '../src/providers/types.ts'
import { SELF_ISSUE_NUMBER, type ProviderName } from '../src/domain/index.ts'

/** What the bench puts in each job: the request without the buyer's identifier, which stays encrypted. */
export interface NaiveJob {
  readonly merchantId: string
  readonly provider: ProviderName
  readonly transactionId: string
  readonly piiEnc: string | null
  readonly selfIssued: boolean
  readonly request: Omit<IssueRequest, 'identifier' | 'merchantBusinessNumber' | 'buyer'>
}

export const NAIVE_TABLE_SQL = `CREATE TABLE IF NOT EXISTS naive_results (
  id bigserial PRIMARY KEY, provider_key text NOT NULL, outcome text NOT NULL, approval_number text,
  started_at timestamptz NOT NULL, done_at timestamptz NOT NULL DEFAULT clock_timestamp())`

async function main() {
  const config = loadDemoConfig()
  const merchants = new Map(config.merchants.map((m) => [m.id, m]))
  const http = createHttpClient({ connectTimeoutMs: config.http.connectTimeoutMs, readTimeoutMs: config.http.readTimeoutMs })
  const adapters = new Map<string, CashReceiptProvider>()
  const adapter = (merchantId: string, name: ProviderName) => {
    const key = `${merchantId}/${name}`
    let a = adapters.get(key)
    if (!a) {
      a = createProvider(name, {
        baseUrl: config.providerBaseUrls[name],
        credentials: merchants.get(merchantId)!.providers[name] as never,
        http,
        timeouts: { connectMs: config.http.connectTimeoutMs, readMs: config.http.readTimeoutMs },
      })
      adapters.set(key, a)
    }
    return a
  }
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: config.dbPoolMax })
  const worker = new Worker<NaiveJob>(
    process.env.NAIVE_QUEUE ?? 'naive',
    async (job) => {
      const startedAt = new Date()
      const { merchantId, provider, transactionId, piiEnc, selfIssued, request } = job.data
      const pii = piiEnc ? decryptPii(piiEnc, config.dataKeys, transactionId) : {}
      const req: IssueRequest = {
        ...request,
        identifier: selfIssued ? SELF_ISSUE_NUMBER : pii.identifier!,
        buyer: { name: pii.buyerName, email: pii.buyerEmail, tel: pii.buyerTel },
        merchantBusinessNumber: merchants.get(merchantId)!.businessNumber.replace(/-/g, ''),
      }
      const outcome = await adapter(merchantId, provider).issue(req)
      if (outcome.kind !== 'issued') throw new Error(`issue: ${outcome.kind} ${outcome.meta.httpStatus ?? ''} ${outcome.meta.providerCode ?? ''}`)
      await pool.query('INSERT INTO naive_results (provider_key, outcome, approval_number, started_at) VALUES ($1, $2, $3, $4)', [
        request.providerKey,
        outcome.kind,
        outcome.receipt.approvalNumber ?? null,
        startedAt,
      ])
    },
    {
      connection: new Redis(config.redisUrl, { maxRetriesPerRequest: null }) as never,
      prefix: config.queuePrefix,
      concurrency: Number(process.env.NAIVE_CONCURRENCY ?? 64),
    },
  )
  await worker.waitUntilReady()
  process.stdout.write('ready\n')
  const stop = () => {
    void worker
      .close()
      .then(() => pool.end())
      .then(() => process.exit(0))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
