/**
 * Buyer notification rules that need no I/O: merchant notify settings and their config errors, the
 * Korean templates (SMS 90-byte EUC-KR short form vs LMS, 알림톡 variables, masked data only), the
 * deterministic Message-ID and idempotency key, and which SMTP failures are safe to send again.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/config.ts'
import { DEMO_MERCHANTS, loadDemoConfig } from '../../src/demo/defaults.ts'
import type { NotificationContext } from '../../src/db/notifications.ts'
import { classifySmtpError } from '../../src/notify/email.ts'
import { notificationIdempotencyKey, notificationMessageId } from '../../src/notify/notifier.ts'
import { emailContent, eucKrBytes, kakaoContent, messageFacts, smsContent, SMS_MAX_BYTES } from '../../src/notify/templates.ts'

function merchantsFile(notify: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'crt-notify-cfg-'))
  const file = join(dir, 'merchants.json')
  writeFileSync(file, JSON.stringify([{ ...DEMO_MERCHANTS[0], notify }]))
  return file
}

describe('merchant notify settings', () => {
  it('is off unless a merchant switches a channel on', () => {
    expect(loadDemoConfig({}).notify.enabled).toBe(false)
    const file = merchantsFile({ sms: { enabled: true, sender: '02-123-4567' } })
    const c = loadDemoConfig({ MERCHANTS_FILE: file })
    expect(c.notify.enabled).toBe(true)
    expect(c.notify.gatewayUrl).toBe('http://127.0.0.1:4010/gateway')
  })

  it.each([
    [{ email: { enabled: true, from: 'receipts@clinic.example' } }, {}, /SMTP_URL: required: merchant "m-clinic" enables email notifications/],
    [{ email: { enabled: true, from: 'not an address' } }, { SMTP_URL: 'smtp://127.0.0.1:25' }, /\[0\.notify\.email\.from\] must be an email address/],
    [{ sms: { enabled: true, sender: '12345' } }, {}, /\[0\.notify\.sms\.sender\] must be a Korean phone number/],
    [{ kakao: { enabled: true, senderKey: 'k' } }, {}, /\[0\.notify\.kakao\.templateCode\]/],
    [{ sms: { enabled: true, sender: '02-123-4567', extra: 1 } }, {}, /\[0\.notify\.sms\]/],
    [
      { sms: { enabled: true, sender: '1588-1234' } },
      { NODE_ENV: 'production', DATA_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}` },
      /NOTIFY_GATEWAY_URL: required in production: merchant "m-clinic" enables sms/,
    ],
  ])('refuses %j naming the field or variable', (notify, env, message) => {
    const run = () => loadDemoConfig({ MERCHANTS_FILE: merchantsFile(notify), ...env })
    expect(run).toThrow(ConfigError)
    expect(run).toThrow(message)
  })

  it('accepts a display name in the sender address and never echoes SMTP_URL', () => {
    const file = merchantsFile({ email: { enabled: true, from: '서울 밝은치과의원 <receipts@clinic.example>', replyTo: 'help@clinic.example' } })
    expect(loadDemoConfig({ MERCHANTS_FILE: file, SMTP_URL: 'smtp://u:p4ss@127.0.0.1:25' }).notify.smtpUrl).toBe('smtp://u:p4ss@127.0.0.1:25')
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file, SMTP_URL: 'p4ss not a url' })).toThrow(/SMTP_URL: not a valid URL/)
    expect(() => loadDemoConfig({ MERCHANTS_FILE: file, SMTP_URL: 'p4ss not a url' })).not.toThrow(/p4ss/)
  })
})

const ctx = (over: Partial<NotificationContext> = {}): NotificationContext => ({
  kind: 'issue',
  transactionId: 'T-1',
  merchantName: '동네 꽃집',
  orderName: '장미 한 다발',
  approvalNumber: '123456789',
  originalApprovalNumber: '123456789',
  amount: 55000,
  purpose: 'deduction',
  tradedAt: new Date('2026-06-02T02:00:00Z'),
  receiptUrl: null,
  identifierMasked: '010-****-5678',
  piiEnc: null,
  fullCancel: false,
  ...over,
})

describe('templates', () => {
  it('sends a short SMS within 90 EUC-KR bytes, and an LMS when the merchant name makes it longer', () => {
    const short = smsContent(messageFacts(ctx(), undefined))
    expect(short).toEqual({ type: 'sms', text: '[동네 꽃집] 현금영수증 발급 55,000원 승인123456789' })
    expect(eucKrBytes(short.text)).toBeLessThanOrEqual(SMS_MAX_BYTES)
    const long = smsContent(messageFacts(ctx({ merchantName: '서울특별시 강남구 아주 긴 이름의 밝은미소 치과의원 본점' }), undefined))
    expect(long.type).toBe('lms')
    expect(long.subject).toBe('현금영수증 발급 안내')
    expect(long.text).toContain('거래일시: 2026-06-02 11:00')
    const cancel = smsContent(messageFacts(ctx({ kind: 'cancel', approvalNumber: 'C-1' }), undefined))
    expect(cancel.text).toBe('[동네 꽃집] 현금영수증 취소 55,000원 승인123456789')
  })

  it('links the provider receipt, else our printable page when configured, else nothing', () => {
    expect(messageFacts(ctx({ receiptUrl: 'https://provider.example/r/1' }), 'https://dash.example').receiptUrl).toBe('https://provider.example/r/1')
    expect(messageFacts(ctx(), 'https://dash.example').receiptUrl).toBe('https://dash.example/transactions/T-1/receipt')
    expect(messageFacts(ctx(), undefined).receiptUrl).toBeNull()
    expect(emailContent(messageFacts(ctx(), undefined)).text).not.toContain('영수증 보기')
  })

  it('fills every 알림톡 variable and escapes HTML in the email', () => {
    const k = kakaoContent(messageFacts(ctx(), undefined), 'CR_RECEIPT_1')
    expect(k.variables).toEqual({
      상호: '동네 꽃집',
      구분: '현금영수증 발급',
      승인번호: '123456789',
      거래일시: '2026-06-02 11:00',
      금액: '55,000원',
      용도: '소득공제',
      영수증URL: '-',
    })
    expect(k.text).not.toMatch(/#\{/)
    const html = emailContent(messageFacts(ctx({ merchantName: '<b>꽃</b>' }), undefined)).html
    expect(html).toContain('&lt;b&gt;꽃&lt;/b&gt;')
    expect(html).not.toContain('<b>꽃</b>')
  })

  it('shows the masked identifier only', () => {
    const e = emailContent(messageFacts(ctx(), undefined))
    expect(e.text).toContain('발급번호: 010-****-5678')
    expect(e.subject).toBe('[동네 꽃집] 현금영수증 발급 안내 (55,000원)')
  })
})

describe('keys and SMTP failures', () => {
  it('gives one Message-ID and one idempotency key per event and channel', () => {
    const n = { receiptId: 42, event: 'cancelled' as const, merchantId: 'm-shop', channel: 'sms' as const }
    expect(notificationMessageId(n, '꽃집 <r@flowers.example>')).toBe('<receipt-42.cancelled.m-shop@flowers.example>')
    expect(notificationMessageId(n, 'r@flowers.example')).toBe('<receipt-42.cancelled.m-shop@flowers.example>')
    expect(notificationIdempotencyKey(n)).toBe('cr-m-shop-42-cancelled-sms')
    expect(notificationIdempotencyKey({ ...n, channel: 'kakao' })).not.toBe(notificationIdempotencyKey(n))
  })

  it.each([
    [{ code: 'ESOCKET', command: 'CONN' }, 'retryable'],
    [{ code: 'ECONNECTION', command: 'CONN' }, 'retryable'],
    [{ code: 'EENVELOPE', command: 'RCPT TO', responseCode: 550 }, 'permanent'],
    [{ code: 'EENVELOPE', command: 'RCPT TO', responseCode: 451 }, 'retryable'],
    [{ code: 'EMESSAGE', command: 'DATA', responseCode: 452 }, 'retryable'],
    [{ code: 'ETIMEDOUT', command: 'DATA' }, 'unknown'],
    [{ code: 'ESOCKET', command: '' }, 'unknown'],
  ])('classifies %j as %s, naming no address', (err, kind) => {
    const out = classifySmtpError(Object.assign(new Error('550 5.1.1 <someone@example.com>: Recipient address rejected'), err))
    expect(out.kind).toBe(kind)
    expect(JSON.stringify(out)).not.toContain('@')
  })
})
