/**
 * Which receipt events reach the buyer, and at what pace, on real Postgres and Redis, the provider
 * sandbox and the gateway simulator over HTTP (docs/notifications.md):
 * - a provisional receipt (Toss: the tax authority answers a day or two later) is announced once it
 *   is final, with the approval number that counts; one the tax authority refuses is never announced,
 *   and its re-drive is announced once, when final; a provisional receipt cancelled before it was
 *   final is announced neither issued nor cancelled;
 * - sends of one merchant and channel keep the configured pace (NOTIFY_SMS_PER_SECOND).
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { startGatewaySimulator, type GatewaySimulator } from '../../sandbox/gateway.ts'
import { DEMO_MERCHANTS } from '../../src/demo/defaults.ts'
import { IMPORT_HEADER } from '../../src/demo/generate.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { reconcileDay } from '../../src/jobs/reconcile.ts'
import { redrive } from '../../src/jobs/redrive.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { settle, waitForRun } from '../helpers/pipeline.ts'

const SMS_PER_SECOND = 2
let sandbox: Sandbox
let gateway: GatewaySimulator
let env: TestEnv
let dir: string

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  gateway = await startGatewaySimulator({ apiKey: 'gw-key' })
  dir = await mkdtemp(join(tmpdir(), 'crt-notify-events-'))
  const merchants = DEMO_MERCHANTS.map((m) => (m.id === 'm-clinic' ? { ...m, notify: { sms: { enabled: true, sender: '02-123-4567' } } } : m))
  await writeFile(join(dir, 'merchants.json'), JSON.stringify(merchants))
  env = await createTestEnv({
    sandboxUrl: sandbox.url,
    env: {
      MERCHANTS_FILE: join(dir, 'merchants.json'),
      NOTIFY_GATEWAY_URL: gateway.url,
      NOTIFY_GATEWAY_API_KEY: 'gw-key',
      NOTIFY_POLL_MS: '100',
      NOTIFY_BACKOFF_MS: '200',
      NOTIFY_SMS_PER_SECOND: String(SMS_PER_SECOND),
      WORKER_ATTEMPTS: '3',
    },
  })
  env.app.startWorker({ concurrency: 4 })
}, 60_000)

afterAll(async () => {
  await env?.close()
  await gateway?.close()
  await sandbox?.close()
})

const db = () => env.app.db()
let files = 0
async function issueDay(date: string, rows: Record<string, string>[]) {
  const file = join(dir, `day-${++files}.csv`)
  const full = rows.map((r) => ({
    merchant_id: 'm-clinic',
    order_name: '스케일링',
    method: 'bank_transfer',
    amount: '55000',
    tax_free_amount: '0',
    service_fee: '0',
    identifier: '01055556666',
    purpose: 'deduction',
    buyer_name: '김하나',
    status: 'completed',
    refunded_amount: '0',
    paid_at: `${date}T11:00:00+09:00`,
    ...r,
  }))
  await writeFile(file, `${IMPORT_HEADER.join(',')}\n${full.map((r) => IMPORT_HEADER.map((h) => (r as Record<string, string>)[h] ?? '').join(',')).join('\n')}\n`)
  const res = await importTransactions(db(), env.app.config.dataKeys, file, { nowMs: Date.now() })
  expect(res.written, JSON.stringify(res.errors)).toBeTruthy()
  return waitForRun(env.app, (await settle(env.app, date)).runId!)
}
const receiptsOf = (transactionId: string) => db().selectFrom('receipts').selectAll().where('transaction_id', '=', transactionId).orderBy('id').execute()
const issueRow = async (transactionId: string) => (await receiptsOf(transactionId)).find((r) => r.kind === 'issue')!
const outboxOf = async (transactionId: string) => {
  const ids = (await receiptsOf(transactionId)).map((r) => r.id)
  return db().selectFrom('notifications').selectAll().where('receipt_id', 'in', ids).orderBy('id').execute()
}
const smsTo = (digits: string) => gateway.state.messages.filter((m) => m.to === digits)

describe('provisional receipts (Toss)', () => {
  it('are announced once final; a refused one only after its re-drive is final; one cancelled before final never', async () => {
    const deps = { db: db(), providers: env.app.providers(), logger: env.app.logger }
    const tel = { A: '01020000001', B: '01020000002', C: '01020000003' }
    // One of the first day's two Toss receipts will be refused by the tax authority.
    sandbox.toss.failNext(['TS1'])
    await issueDay('2026-07-01', [
      { transaction_id: 'TP-A', provider: 'toss', buyer_tel: tel.A },
      { transaction_id: 'TP-B', provider: 'toss', buyer_tel: tel.B },
    ])
    await issueDay('2026-07-02', [{ transaction_id: 'TP-C', provider: 'toss', buyer_tel: tel.C }])
    for (const id of ['TP-A', 'TP-B', 'TP-C']) {
      const r = await issueRow(id)
      expect([r.state, r.provisional]).toEqual(['issued', true])
      // recorded issued, provisional: nothing is announced yet (the trigger wrote no outbox row)
      expect(await outboxOf(id)).toEqual([])
    }

    // TP-C is cancelled in full while still provisional: the buyer never heard of it, so no notice.
    const req = await env.app.cancel({ transactionId: 'TP-C', reason: 1 })
    await eventually(async () => (await receiptsOf('TP-C')).find((r) => r.kind === 'cancel' && r.state === 'issued'), 30_000)
    expect((await issueRow('TP-C')).state).toBe('cancelled')
    expect(req).toBeTruthy()
    expect(await outboxOf('TP-C')).toEqual([])

    // The tax authority's answers are in: one final, one refused.
    sandbox.toss.advance(2 * 86_400_000)
    const late = await reconcileDay(deps, '2026-07-03', '2026-07-04')
    expect(late.finalized).toHaveLength(1)
    expect(late.rejected.map((r) => r.code)).toEqual(['TS1'])
    const [final, refused] = late.finalized[0]!.transaction_id === 'TP-A' ? (['TP-A', 'TP-B'] as const) : (['TP-B', 'TP-A'] as const)
    const finalRow = await issueRow(final)
    expect([finalRow.state, finalRow.provisional]).toEqual(['issued', false])
    await eventually(async () => (await outboxOf(final)).some((n) => n.state === 'sent'), 30_000)
    const finalOutbox = await outboxOf(final)
    expect(finalOutbox.map((n) => [n.receipt_id, n.event, n.channel, n.state])).toEqual([[finalRow.id, 'issued', 'sms', 'sent']])
    expect(smsTo(tel[final.slice(3) as 'A' | 'B'])).toHaveLength(1)
    expect(smsTo(tel[final.slice(3) as 'A' | 'B'])[0]!.text).toContain(finalRow.approval_number!)
    // refused: issued → failed; never announced
    expect((await issueRow(refused)).state).toBe('failed')
    expect(await outboxOf(refused)).toEqual([])

    // Re-driven, it is issued again, provisionally: still nothing; final two days on: one SMS.
    const rd = await redrive({ db: db(), queue: env.app.receiptsQueue(), logger: env.app.logger, todayKst: '2026-07-04' }, { errorClass: 'tax_authority' })
    expect(rd.count).toBe(1)
    await waitForRun(env.app, rd.runId!)
    const reissued = await issueRow(refused)
    expect([reissued.state, reissued.provisional]).toEqual(['issued', true])
    expect(await outboxOf(refused)).toEqual([])
    sandbox.toss.advance(2 * 86_400_000)
    const last = await reconcileDay(deps, '2026-07-05', '2026-07-06')
    expect(last.finalized.map((f) => f.transaction_id)).toEqual([refused])
    await eventually(async () => (await outboxOf(refused)).some((n) => n.state === 'sent'), 30_000)
    const refusedRow = await issueRow(refused)
    expect((await outboxOf(refused)).map((n) => [n.receipt_id, n.event, n.state])).toEqual([[refusedRow.id, 'issued', 'sent']])
    const sms = smsTo(tel[refused.slice(3) as 'A' | 'B'])
    expect(sms).toHaveLength(1)
    expect(sms[0]!.text).toContain(refusedRow.approval_number!)

    // Each buyer of a final receipt heard of it exactly once; the buyer of the cancelled one never.
    expect(smsTo(tel.A)).toHaveLength(1)
    expect(smsTo(tel.B)).toHaveLength(1)
    expect(smsTo(tel.C)).toHaveLength(0)
    expect(await outboxOf('TP-C')).toEqual([])
  }, 120_000)

  it('a receipt final at once (PaySsam) is announced on issue, and its cancellation too', async () => {
    await issueDay('2026-07-10', [{ transaction_id: 'PS-1', provider: 'payssam', buyer_tel: '01020000009' }])
    await eventually(async () => (await outboxOf('PS-1')).some((n) => n.state === 'sent'), 30_000)
    await env.app.cancel({ transactionId: 'PS-1', reason: 1 })
    await eventually(async () => (await outboxOf('PS-1')).filter((n) => n.state === 'sent').length === 2, 30_000)
    expect((await outboxOf('PS-1')).map((n) => n.event)).toEqual(['issued', 'cancelled'])
    expect(smsTo('01020000009').map((m) => m.text.includes('취소'))).toEqual([false, true])
  }, 60_000)
})

describe('notification pace', () => {
  it(`sends one merchant's SMS no faster than NOTIFY_SMS_PER_SECOND (${SMS_PER_SECOND}), each once`, async () => {
    const tels = Array.from({ length: 6 }, (_, i) => `0103000000${i}`)
    await issueDay(
      '2026-07-20',
      tels.map((t, i) => ({ transaction_id: `PACE-${i}`, provider: 'payssam', buyer_tel: t })),
    )
    await eventually(async () => tels.every((t) => smsTo(t).length === 1), 60_000)
    const times = tels.map((t) => smsTo(t)[0]!.acceptedAt).sort((a, b) => a - b)
    // Bottleneck starts the sends at least 1000 / perSecond ms apart (across processes, through
    // Redis); arrival at the gateway can shift by one request's latency, so one interval is slack.
    // A loaded machine only spreads them further: this is a lower bound.
    const minTime = 1000 / SMS_PER_SECOND
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual((tels.length - 2) * minTime)
    for (const t of tels) expect(smsTo(t)).toHaveLength(1)
  }, 90_000)
})
