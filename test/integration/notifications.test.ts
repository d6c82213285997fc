/**
 * Buyer notification end to end on real Postgres and Redis, the provider sandbox over HTTP, a real
 * local SMTP server (smtp-server) and the SMS/Kakao gateway simulator over HTTP: one email and one
 * SMS per receipt event, in Korean, with a stable Message-ID; a worker that died holding a claim
 * after its send, a worker process killed (SIGKILL) while its send was out, and a job delivered
 * twice, still make one message; SMTP down delays only the email
 * (receipts keep issuing) and it is sent once SMTP is back; a merchant with notifications off gets
 * nothing; a cancellation sends a cancel notice; no address or number in job data or log lines.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { startGatewaySimulator, type GatewaySimulator } from '../../sandbox/gateway.ts'
import { createApp, type App } from '../../src/app.ts'
import { DEMO_MERCHANTS, loadDemoConfig } from '../../src/demo/defaults.ts'
import { IMPORT_HEADER } from '../../src/demo/generate.ts'
import { importTransactions } from '../../src/import/import-transactions.ts'
import { claimNotification, fenceNotificationSend } from '../../src/db/notifications.ts'
import { createHttpGateway } from '../../src/notify/gateway.ts'
import { createLogger } from '../../src/logger.ts'
import { notificationIdempotencyKey, notificationMessageId } from '../../src/notify/notifier.ts'
import { notifyJobId } from '../../src/queue/queues.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { runCli, settle, spawnCli, waitForRun } from '../helpers/pipeline.ts'
import { startTestSmtp, type TestSmtp } from '../helpers/smtp.ts'

let sandbox: Sandbox
let gateway: GatewaySimulator
let smtp: TestSmtp
let env: TestEnv
let notifierApp: App
let dir: string
const logLines: string[] = []

const CLINIC_FROM = '서울 밝은치과의원 <receipts@clinic.example>'

beforeAll(async () => {
  sandbox = await startSandbox({ port: 0 })
  gateway = await startGatewaySimulator({ apiKey: 'gw-test-key' })
  smtp = await startTestSmtp()
  dir = await mkdtemp(join(tmpdir(), 'crt-notify-'))
  const merchants = DEMO_MERCHANTS.map((m) =>
    m.id === 'm-clinic'
      ? {
          ...m,
          notify: {
            email: { enabled: true, from: CLINIC_FROM },
            sms: { enabled: true, sender: '02-123-4567' },
          },
        }
      : m.id === 'm-academy'
        ? {
            ...m,
            notify: {
              email: { enabled: false, from: 'a@academy.example' },
              sms: { enabled: false, sender: '02-765-4321' },
            },
          }
        : m,
  )
  await writeFile(join(dir, 'merchants.json'), JSON.stringify(merchants))
  env = await createTestEnv({
    sandboxUrl: sandbox.url,
    env: {
      MERCHANTS_FILE: join(dir, 'merchants.json'),
      SMTP_URL: smtp.url,
      NOTIFY_GATEWAY_URL: gateway.url,
      NOTIFY_GATEWAY_API_KEY: 'gw-test-key',
      // The issuing app does not send: notifierApp below does, so a test can act before it starts.
      NOTIFY_WORKER: 'false',
      NOTIFY_BACKOFF_MS: '200',
      NOTIFY_ATTEMPTS: '40',
      NOTIFY_POLL_MS: '100',
      NOTIFY_LEASE_MS: '1500',
      NOTIFY_TIMEOUT_MS: '3000',
      WORKER_STALLED_INTERVAL_MS: '1000',
      WORKER_LOCK_MS: '2000',
    },
  })
  env.app.startWorker({ concurrency: 4 })
  // The sending process, its log lines captured as they are written (through the app's redaction).
  const capture = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(...String(chunk).split('\n').filter(Boolean))
      cb()
    },
  })
  const config = loadDemoConfig(env.env({ NOTIFY_WORKER: 'true' }))
  notifierApp = createApp(config, { logger: createLogger({ level: 'debug', pretty: false }, capture) })
}, 60_000)

afterAll(async () => {
  await notifierApp?.close()
  await env?.close()
  await smtp?.stop()
  await gateway?.close()
  await sandbox?.close()
})

const db = () => env.app.db()
const csv = (rows: Record<string, string>[]) => `${IMPORT_HEADER.join(',')}\n${rows.map((r) => IMPORT_HEADER.map((h) => r[h] ?? '').join(',')).join('\n')}\n`
const tx = (over: Record<string, string>): Record<string, string> => ({
  merchant_id: 'm-clinic',
  provider: 'payssam',
  order_name: '스케일링',
  method: 'bank_transfer',
  amount: '55000',
  tax_free_amount: '0',
  service_fee: '0',
  identifier: '01055556666',
  identifier_type: '',
  purpose: 'deduction',
  buyer_name: '김하나',
  status: 'completed',
  refunded_amount: '0',
  ...over,
})
let files = 0
async function issueDay(date: string, rows: Record<string, string>[]) {
  const file = join(dir, `day-${++files}.csv`)
  await writeFile(file, csv(rows.map((r) => ({ paid_at: `${date}T11:00:00+09:00`, ...r }))))
  const res = await importTransactions(db(), env.app.config.dataKeys, file, { nowMs: Date.now() })
  expect(res.written, JSON.stringify(res.errors)).toBeTruthy()
  return waitForRun(env.app, (await settle(env.app, date)).runId!)
}
const issueRow = (transactionId: string) =>
  db().selectFrom('receipts').selectAll().where('transaction_id', '=', transactionId).where('kind', '=', 'issue').executeTakeFirstOrThrow()
const notificationsOf = (receiptId: number) => db().selectFrom('notifications').selectAll().where('receipt_id', '=', receiptId).orderBy('channel').execute()
const mailsTo = (address: string) => smtp.messages.filter((m) => m.envelopeTo.includes(address))
const smsTo = (digits: string) => gateway.state.messages.filter((m) => m.to === digits)

describe('buyer notification', () => {
  it('a worker that died after the gateway accepted: its job, redelivered, sends under the same key and the gateway keeps one SMS', async () => {
    await issueDay('2026-06-01', [tx({ transaction_id: 'NT-0', buyer_email: 'zero@example.com', buyer_tel: '010-2000-0000' })])
    const r = await issueRow('NT-0')
    expect(r.state).toBe('issued')
    // The ledger's commit created the outbox rows; nothing has sent them yet.
    const rows = await eventually(async () => {
      const n = await notificationsOf(r.id)
      return n.length === 2 ? n : undefined
    })
    expect(rows.map((n) => [n.channel, n.event, n.state])).toEqual([
      ['email', 'issued', 'pending'],
      ['sms', 'issued', 'pending'],
    ])
    // A worker claims the SMS row, fences, the gateway accepts, and the worker dies before recording it.
    const sms = rows.find((n) => n.channel === 'sms')!
    // Its job, which BullMQ hands to another worker once the dead one stops renewing its lock.
    await notifierApp.notificationsQueue().add('notify', { notificationId: sms.id }, { jobId: notifyJobId(sms.id, 0) })
    const claim = await claimNotification(db(), sms.id, 'dead-worker', 500)
    expect(claim.claimed).toBe(true)
    expect(await fenceNotificationSend(db(), sms.id, 'dead-worker', 500)).toBe(true)
    const key = notificationIdempotencyKey({
      receiptId: r.id,
      event: 'issued',
      channel: 'sms',
      merchantId: 'm-clinic',
    })
    const first = await createHttpGateway({
      baseUrl: gateway.url,
      apiKey: 'gw-test-key',
      timeoutMs: 3_000,
    }).send({ channel: 'sms', to: '01020000000', from: '021234567', text: '[서울 밝은치과의원] 현금영수증 발급' }, key)
    expect(first.kind).toBe('sent')

    notifierApp.startNotifier()
    await eventually(async () => (await notificationsOf(r.id)).every((n) => n.state === 'sent'), 30_000)
    // The taker-over sent again under the same key: the gateway answered the first acceptance.
    expect(smsTo('01020000000')).toHaveLength(1)
    expect(gateway.state.stats.duplicates).toBeGreaterThanOrEqual(1)
    const after = await notificationsOf(r.id)
    expect(after.find((n) => n.channel === 'sms')).toMatchObject({
      sends: 2,
      message_id: smsTo('01020000000')[0]!.messageId,
    })
    expect(after.find((n) => n.channel === 'email')).toMatchObject({ sends: 1 })
    expect(mailsTo('zero@example.com')).toHaveLength(1)
  }, 60_000)

  it('a worker process killed mid-send: its job is redelivered and the gateway still holds one SMS', async () => {
    // Our notifier stands aside so the job goes to the process we are about to kill.
    const running = notifierApp.startNotifier()
    await running.worker.pause()
    // The gateway accepts the child's SMS and never answers: the child is stuck after the acceptance.
    gateway.state.forceNext(['timeout_after_commit'])
    const duplicatesBefore = gateway.state.stats.duplicates
    const child = spawnCli(['worker', '--concurrency', '2'], env.env({ NOTIFY_WORKER: 'true', NOTIFY_TIMEOUT_MS: '60000' }))
    try {
      await issueDay('2026-06-06', [tx({ transaction_id: 'NT-KILL', buyer_email: 'kill@example.com', buyer_tel: '010-6666-0001' })])
      await eventually(async () => smsTo('01066660001').length === 1, 60_000, 200)
      const r = await issueRow('NT-KILL')
      const held = (await notificationsOf(r.id)).find((n) => n.channel === 'sms')!
      expect(held).toMatchObject({ state: 'sending', sends: 1 })
      expect(held.locked_by).not.toBeNull()
      // The email goes beside the SMS (concurrency 2); this test kills the SMS mid-send, so the kill
      // waits for the email to be recorded (on a loaded run it was still out and went twice).
      await eventually(async () => (await notificationsOf(r.id)).find((n) => n.channel === 'email')?.state === 'sent', 60_000, 100)
    } finally {
      child.kill('SIGKILL')
      await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve)))
    }
    await running.worker.resume()
    const r = await issueRow('NT-KILL')
    await eventually(async () => (await notificationsOf(r.id)).every((n) => n.state === 'sent'), 60_000)
    expect(smsTo('01066660001')).toHaveLength(1)
    expect(gateway.state.stats.duplicates).toBe(duplicatesBefore + 1)
    expect((await notificationsOf(r.id)).find((n) => n.channel === 'sms')).toMatchObject({
      sends: 2,
      message_id: smsTo('01066660001')[0]!.messageId,
    })
    expect(mailsTo('kill@example.com')).toHaveLength(1)
  }, 120_000)

  it('the sandbox serves the gateway under /gateway, deduplicating by key', async () => {
    const gw = createHttpGateway({ baseUrl: `${sandbox.url}/gateway`, apiKey: undefined, timeoutMs: 3_000 })
    const message = {
      channel: 'sms' as const,
      to: '01077770001',
      from: '021234567',
      text: '[동네 꽃집] 현금영수증 발급 1,000원',
    }
    const a = await gw.send(message, 'k-1')
    const b = await gw.send(message, 'k-1')
    expect(a.kind).toBe('sent')
    expect(b).toEqual(a)
    expect(sandbox.gateway.messages).toHaveLength(1)
    expect(await gw.send({ ...message, text: '가'.repeat(46) }, 'k-2')).toEqual({
      kind: 'permanent',
      code: 'SMS_TOO_LONG',
    })
  })

  it('an issue sends one email and one SMS in Korean, with a stable Message-ID', async () => {
    await issueDay('2026-06-02', [tx({ transaction_id: 'NT-1', buyer_email: 'buyer1@example.com', buyer_tel: '010-1234-5678' })])
    const r = await issueRow('NT-1')
    await eventually(async () => (await notificationsOf(r.id)).filter((n) => n.state === 'sent').length === 2, 30_000)

    const mails = mailsTo('buyer1@example.com')
    expect(mails).toHaveLength(1)
    const mail = mails[0]!
    const messageId = notificationMessageId({ receiptId: r.id, event: 'issued', merchantId: 'm-clinic' }, CLINIC_FROM)
    expect(messageId).toBe(`<receipt-${r.id}.issued.m-clinic@clinic.example>`)
    expect(mail.messageId).toBe(messageId)
    expect((await notificationsOf(r.id)).find((n) => n.channel === 'email')!.message_id).toBe(messageId)
    expect(mail.subject).toBe('[서울 밝은치과의원] 현금영수증 발급 안내 (55,000원)')
    expect(mail.text).toContain('서울 밝은치과의원에서 현금영수증이 발급되었습니다.')
    expect(mail.text).toContain(`승인번호: ${r.approval_number}`)
    expect(mail.text).toContain('거래일시: 2026-06-02 11:00')
    expect(mail.text).toContain('금액: 55,000원')
    expect(mail.text).toContain('용도: 소득공제')
    expect(mail.text).toContain('구분: 발급')
    expect(mail.text).not.toContain('01055556666')
    expect(mail.html).toContain('<th align="left">승인번호</th>')
    expect(mail.headers.from).toContain('receipts@clinic.example')

    const sms = smsTo('01012345678')
    expect(sms).toHaveLength(1)
    expect(sms[0]!.from).toBe('021234567')
    expect(sms[0]!.text).toContain('현금영수증 발급')
    expect(sms[0]!.text).toContain('55,000원')
    expect(sms[0]!.idempotencyKey).toBe(`cr-m-clinic-${r.id}-issued-sms`)
  }, 60_000)

  it('a job delivered again after the send changes nothing', async () => {
    const r = await issueRow('NT-1')
    const email = (await notificationsOf(r.id)).find((n) => n.channel === 'email')!
    const job = await notifierApp.notificationsQueue().add('notify', { notificationId: email.id }, { jobId: `notify-${email.id}-again` })
    const done = await eventually(async () => ((await job.isCompleted()) ? true : undefined), 20_000)
    expect(done).toBe(true)
    expect((await notifierApp.notificationsQueue().getJob(job.id!))!.returnvalue).toEqual({
      state: 'already',
      detail: 'sent',
    })
    expect(mailsTo('buyer1@example.com')).toHaveLength(1)
  }, 30_000)

  it('a merchant with notifications off gets nothing sent', async () => {
    // m-shop has no notify settings; m-academy has both channels configured but switched off.
    const report = await issueDay('2026-06-03', [
      tx({
        transaction_id: 'NT-OFF-1',
        merchant_id: 'm-shop',
        buyer_email: 'off1@example.com',
        buyer_tel: '010-3333-0001',
      }),
      tx({
        transaction_id: 'NT-OFF-2',
        merchant_id: 'm-academy',
        buyer_email: 'off2@example.com',
        buyer_tel: '010-3333-0002',
      }),
    ])
    expect(report.totals.issued).toBe(2)
    const ids = [(await issueRow('NT-OFF-1')).id, (await issueRow('NT-OFF-2')).id]
    // Nothing is ever created for them, so nothing can be sent however long we wait.
    expect(await db().selectFrom('notifications').selectAll().where('receipt_id', 'in', ids).execute()).toEqual([])
    expect(mailsTo('off1@example.com').length + mailsTo('off2@example.com').length).toBe(0)
    expect(smsTo('01033330001').length + smsTo('01033330002').length).toBe(0)
  }, 60_000)

  it('SMTP down: receipts keep issuing, the email is retried and sent once SMTP is back', async () => {
    await smtp.stop()
    const report = await issueDay('2026-06-04', [
      tx({ transaction_id: 'NT-DOWN-1', buyer_email: 'down1@example.com', buyer_tel: '010-4444-0001' }),
      tx({
        transaction_id: 'NT-DOWN-2',
        amount: '12000',
        buyer_email: 'down2@example.com',
        buyer_tel: '010-4444-0002',
      }),
    ])
    // Issuance finished while no SMTP server listens.
    expect(report.totals.issued).toBe(2)
    const ids = [(await issueRow('NT-DOWN-1')).id, (await issueRow('NT-DOWN-2')).id]
    // The SMS went; the emails were tried and wait for another attempt.
    await eventually(async () => {
      const rows = await db().selectFrom('notifications').selectAll().where('receipt_id', 'in', ids).execute()
      const emails = rows.filter((n) => n.channel === 'email')
      return rows.filter((n) => n.channel === 'sms' && n.state === 'sent').length === 2 && emails.every((n) => n.attempts >= 2 && n.state !== 'sent')
    }, 30_000)
    const waiting = await db().selectFrom('notifications').selectAll().where('receipt_id', 'in', ids).where('channel', '=', 'email').execute()
    // Refused at connect: surely not delivered, so retryable (nodemailer: ESOCKET during CONN).
    expect(waiting.map((n) => [n.error_class, n.error_code])).toEqual([
      ['retryable', 'ESOCKET:CONN'],
      ['retryable', 'ESOCKET:CONN'],
    ])
    expect(mailsTo('down1@example.com')).toHaveLength(0)

    await smtp.start()
    await eventually(async () => {
      const rows = await db().selectFrom('notifications').select('state').where('receipt_id', 'in', ids).where('channel', '=', 'email').execute()
      return rows.every((n) => n.state === 'sent')
    }, 30_000)
    expect(mailsTo('down1@example.com')).toHaveLength(1)
    expect(mailsTo('down2@example.com')).toHaveLength(1)
    expect(mailsTo('down2@example.com')[0]!.subject).toContain('12,000원')
  }, 90_000)

  it('a cancellation sends a cancel notice', async () => {
    const issued = await issueRow('NT-1')
    const req = await env.app.cancel({ transactionId: 'NT-1', reason: 1 })
    expect(req).toBeTruthy()
    const cancelRow = await eventually(async () => {
      const c = await db().selectFrom('receipts').selectAll().where('transaction_id', '=', 'NT-1').where('kind', '=', 'cancel').executeTakeFirst()
      return c?.state === 'issued' ? c : undefined
    }, 30_000)
    await eventually(async () => {
      const n = await notificationsOf(cancelRow.id)
      return n.length === 2 && n.every((x) => x.state === 'sent' && x.event === 'cancelled')
    }, 30_000)
    const mails = mailsTo('buyer1@example.com')
    expect(mails).toHaveLength(2)
    const notice = mails[1]!
    expect(notice.subject).toBe('[서울 밝은치과의원] 현금영수증 취소 안내 (55,000원)')
    expect(notice.text).toContain('취소되었습니다')
    expect(notice.text).toContain(`승인번호: ${issued.approval_number}`)
    expect(notice.text).toContain('구분: 취소')
    expect(notice.messageId).toBe(`<receipt-${cancelRow.id}.cancelled.m-clinic@clinic.example>`)
    const sms = smsTo('01012345678')
    expect(sms).toHaveLength(2)
    expect(sms[1]!.text).toContain('현금영수증 취소')
  }, 60_000)

  it('keeps addresses and numbers out of job data and log lines', async () => {
    const queue = notifierApp.notificationsQueue()
    const jobs = await queue.getJobs(['completed', 'failed', 'delayed', 'waiting', 'active'], 0, 1_000)
    expect(jobs.length).toBeGreaterThanOrEqual(8)
    for (const j of jobs) expect(Object.keys(j.data)).toEqual(['notificationId'])
    // And in Redis itself: every key of the queue, every value.
    const redis = notifierApp.redis()
    const keys = await redis.keys(`${env.prefix}:notifications:*`)
    let dump = ''
    for (const k of keys) {
      const type = await redis.type(k)
      if (type === 'hash') dump += JSON.stringify(await redis.hgetall(k))
      else if (type === 'string') dump += (await redis.get(k)) ?? ''
      else if (type === 'list') dump += (await redis.lrange(k, 0, -1)).join(',')
    }
    expect(dump).toContain('notificationId')
    const secrets = ['example.com', '010-1234-5678', '01066660001', '01012345678', '01020000000', '0104444', '김하나', '01055556666']
    for (const s of secrets) expect(dump).not.toContain(s)

    expect(logLines.some((l) => l.includes('"outcome":"sent"'))).toBe(true)
    expect(logLines.some((l) => l.includes('"outcome":"retry"'))).toBe(true)
    for (const s of secrets) expect(logLines.filter((l) => l.includes(s))).toEqual([])
  })

  it('counts notifications in the report and in /metrics, and re-drives failed ones from the CLI', async () => {
    const report = await env.app.report({ date: '2026-06-02' })
    expect(report.notifications).toMatchObject({ sent: 4, failed: 0, pending: 0 })
    expect(report.notifications.by_channel.email).toMatchObject({ sent: 2 })

    // The gateway refuses the next SMS for good: the notification fails, visibly.
    gateway.state.forceNext(['400'])
    await issueDay('2026-06-05', [tx({ transaction_id: 'NT-FAIL', buyer_email: 'fail@example.com', buyer_tel: '010-5555-0001' })])
    const r = await issueRow('NT-FAIL')
    const failed = await eventually(async () => {
      const n = (await notificationsOf(r.id)).find((x) => x.channel === 'sms')
      return n?.state === 'failed' ? n : undefined
    }, 30_000)
    expect(failed).toMatchObject({ error_class: 'permanent', error_code: 'REJECTED', sends: 1 })
    // The email of the same event goes its own way: wait until it is sent too.
    await eventually(async () => (await notificationsOf(r.id)).find((x) => x.channel === 'email')?.state === 'sent', 30_000)
    expect((await env.app.report({ date: '2026-06-05' })).notifications).toMatchObject({ failed: 1, sent: 1 })

    const dashboard = await notifierApp.startDashboard({ port: 0, host: '127.0.0.1' })
    try {
      const metrics = await (await fetch(`${dashboard.url}/metrics`)).text()
      expect(metrics).toMatch(/cash_receipts_notifications\{channel="sms",state="failed"\} 1\b/)
      expect(metrics).toMatch(/cash_receipts_queue_jobs\{queue="notifications",state="completed"\} [1-9]/)
    } finally {
      await dashboard.close()
    }

    for (const sub of [['notify'], ['notify', 'status'], ['notify', 'redrive']]) {
      const help = await runCli([...sub, '--help'], env.env())
      expect(help.code, sub.join(' ')).toBe(0)
      expect(help.stdout).toContain(`Usage: cash-receipts ${sub.join(' ')}`)
    }
    const status = await runCli(['notify', 'status', '--json'], env.env())
    expect(status.code, status.stderr).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ failed: 1, by_channel: { sms: { failed: 1 } } })
    const dry = await runCli(['notify', 'redrive', '--channel', 'sms', '--dry-run', '--json'], env.env())
    expect(JSON.parse(dry.stdout)).toEqual({ dry_run: true, count: 1, by_channel: { sms: 1 } })
    expect((await notificationsOf(r.id)).find((x) => x.channel === 'sms')!.state).toBe('failed')
    const bad = await runCli(['notify', 'redrive', '--merchant', 'nobody'], env.env())
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--merchant: no merchant "nobody"')

    const redriven = await runCli(['notify', 'redrive', '--json'], env.env())
    expect(redriven.code, redriven.stderr).toBe(0)
    expect(JSON.parse(redriven.stdout)).toEqual({ dry_run: false, count: 1, by_channel: { sms: 1 } })
    await eventually(async () => (await notificationsOf(r.id)).every((x) => x.state === 'sent'), 30_000)
    expect(smsTo('01055550001')).toHaveLength(1)
    expect((await notificationsOf(r.id)).find((x) => x.channel === 'sms')).toMatchObject({
      redrive_count: 1,
      sends: 2,
    })
  }, 120_000)
})
