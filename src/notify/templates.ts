/**
 * The buyer's messages, in Korean: an email (subject, plain text and simple HTML), an SMS (one
 * 90-byte EUC-KR short message when it fits, otherwise an LMS with a subject) and a KakaoTalk 알림톡
 * (the approved template's variables plus its rendered text). What they say: 상호, 승인번호, 거래일시,
 * 금액, 용도, 취소 여부 and the receipt URL (the provider's, or our printable page where configured).
 * Only masked identifiers appear; the buyer's address is never part of a message body.
 */
import iconv from 'iconv-lite'
import { kstWallClock } from '../domain/index.ts'
import type { NotificationContext } from '../db/notifications.ts'

const PURPOSE_KO: Readonly<Record<string, string>> = { deduction: '소득공제', expense: '지출증빙' }

/** SMS short form limit: 90 bytes in EUC-KR (a Hangul syllable is 2 bytes). Longer goes as LMS. */
export const SMS_MAX_BYTES = 90

export interface MessageFacts {
  readonly cancelled: boolean
  readonly merchantName: string
  readonly approvalNumber: string
  readonly tradedAt: string
  readonly amount: string
  readonly purpose: string
  readonly orderName: string | null
  readonly identifierMasked: string | null
  readonly receiptUrl: string | null
}

export function eucKrBytes(text: string): number {
  return iconv.encode(text, 'euc-kr').length
}

export function formatKrw(n: number): string {
  return `${n.toLocaleString('en-US')}원`
}

/** The facts every channel shows, from the outbox row's context. */
export function messageFacts(ctx: NotificationContext, receiptBaseUrl: string | undefined): MessageFacts {
  const printable = receiptBaseUrl ? `${receiptBaseUrl}/transactions/${encodeURIComponent(ctx.transactionId)}/receipt` : null
  return {
    cancelled: ctx.kind === 'cancel',
    merchantName: ctx.merchantName,
    approvalNumber: (ctx.kind === 'cancel' ? ctx.originalApprovalNumber : ctx.approvalNumber) ?? '-',
    tradedAt: kstWallClock(ctx.tradedAt).slice(0, 16).replace('T', ' '),
    amount: formatKrw(ctx.amount),
    purpose: PURPOSE_KO[ctx.purpose] ?? ctx.purpose,
    orderName: ctx.orderName,
    identifierMasked: ctx.identifierMasked,
    receiptUrl: ctx.receiptUrl ?? printable,
  }
}

const title = (f: MessageFacts) => (f.cancelled ? '현금영수증 취소 안내' : '현금영수증 발급 안내')

function lines(f: MessageFacts): [string, string][] {
  return [
    ['상호', f.merchantName],
    ['구분', f.cancelled ? '취소' : '발급'],
    ['승인번호', f.approvalNumber],
    ['거래일시', f.tradedAt],
    [f.cancelled ? '취소금액' : '금액', f.amount],
    ['용도', f.purpose],
    ...(f.orderName ? ([['상품명', f.orderName]] as [string, string][]) : []),
    ...(f.identifierMasked ? ([['발급번호', f.identifierMasked]] as [string, string][]) : []),
  ]
}

export interface EmailContent {
  readonly subject: string
  readonly text: string
  readonly html: string
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

export function emailContent(f: MessageFacts): EmailContent {
  const subject = `[${f.merchantName}] ${title(f)} (${f.amount})`
  const intro = f.cancelled ? `${f.merchantName}에서 발급한 현금영수증이 취소되었습니다.` : `${f.merchantName}에서 현금영수증이 발급되었습니다.`
  const text = [
    intro,
    '',
    ...lines(f).map(([k, v]) => `${k}: ${v}`),
    ...(f.receiptUrl ? ['', `영수증 보기: ${f.receiptUrl}`] : []),
    '',
    '본 메일은 발신 전용입니다. 현금영수증 내역은 국세청 홈택스(www.hometax.go.kr)에서도 확인하실 수 있습니다.',
  ].join('\n')
  const html = `<!doctype html><html lang="ko"><head><meta charset="utf-8"><title>${escapeHtml(title(f))}</title></head>
<body style="font-family: sans-serif; word-break: keep-all">
<h2>${escapeHtml(title(f))}</h2>
<p>${escapeHtml(intro)}</p>
<table cellpadding="4" style="border-collapse: collapse">
${lines(f)
  .map(([k, v]) => `<tr><th align="left">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`)
  .join('\n')}
</table>
${f.receiptUrl ? `<p><a href="${escapeHtml(f.receiptUrl)}">영수증 보기</a></p>` : ''}
<p style="color: #666; font-size: small">본 메일은 발신 전용입니다. 현금영수증 내역은 국세청 홈택스에서도 확인하실 수 있습니다.</p>
</body></html>`
  return { subject, text, html }
}

export interface SmsContent {
  /** `sms`: one short message ≤ 90 EUC-KR bytes; `lms`: a long message with a subject. */
  readonly type: 'sms' | 'lms'
  readonly subject?: string
  readonly text: string
}

/** The short form when it fits in 90 EUC-KR bytes, else the long form as LMS. */
export function smsContent(f: MessageFacts): SmsContent {
  const short = `[${f.merchantName}] 현금영수증 ${f.cancelled ? '취소' : '발급'} ${f.amount} 승인${f.approvalNumber}`
  if (eucKrBytes(short) <= SMS_MAX_BYTES) return { type: 'sms', text: short }
  const text = [`[${f.merchantName}] ${title(f)}`, ...lines(f).map(([k, v]) => `${k}: ${v}`), ...(f.receiptUrl ? [`영수증: ${f.receiptUrl}`] : [])].join('\n')
  return { type: 'lms', subject: title(f), text }
}

export interface KakaoContent {
  readonly templateCode: string
  /** The 알림톡 template's variables, by their #{name}. */
  readonly variables: Readonly<Record<string, string>>
  /** The template rendered (what the gateway falls back to, and what a log of the template shows). */
  readonly text: string
}

/**
 * The 알림톡 template this project registers (docs/notifications.md), rendered with the facts. The
 * gateway checks the variables against the approved template named by `templateCode`.
 */
export const KAKAO_TEMPLATE = ['[#{상호}] #{구분} 안내', '승인번호: #{승인번호}', '거래일시: #{거래일시}', '금액: #{금액}', '용도: #{용도}', '영수증: #{영수증URL}'].join('\n')

export function kakaoContent(f: MessageFacts, templateCode: string): KakaoContent {
  const variables: Record<string, string> = {
    상호: f.merchantName,
    구분: f.cancelled ? '현금영수증 취소' : '현금영수증 발급',
    승인번호: f.approvalNumber,
    거래일시: f.tradedAt,
    금액: f.amount,
    용도: f.purpose,
    영수증URL: f.receiptUrl ?? '-',
  }
  const text = KAKAO_TEMPLATE.replace(/#\{([^}]+)\}/g, (_m, k: string) => variables[k] ?? '')
  return { templateCode, variables, text }
}
