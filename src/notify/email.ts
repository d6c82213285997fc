/**
 * Email through SMTP (nodemailer). SMTP has no idempotency key: a message the server accepted (250
 * after DATA) whose acceptance we never recorded is sent again by the next attempt. What bounds it:
 * the claim and the send fence (one sender at a time per row), a deterministic Message-ID (the
 * repeat is the same message to the buyer's mail store, which many stores fold into one), and the
 * classification below: only a failure at or after DATA is `unknown`; refusals and failures before
 * DATA surely delivered nothing. docs/notifications.md, "The SMTP window".
 */
import nodemailer from 'nodemailer'
import type { EmailContent } from './templates.ts'

export interface EmailMessage extends EmailContent {
  readonly from: string
  readonly replyTo?: string | undefined
  readonly to: string
  /** `<…@…>`, the same for every attempt of one event. */
  readonly messageId: string
}

export type EmailOutcome =
  | { readonly kind: 'sent'; readonly messageId: string }
  | { readonly kind: 'retryable'; readonly code: string }
  | { readonly kind: 'permanent'; readonly code: string }
  | { readonly kind: 'unknown'; readonly code: string }

export interface EmailSender {
  send(message: EmailMessage): Promise<EmailOutcome>
  close(): void
}

/** SMTP commands before the message content: a failure there delivered nothing. */
const BEFORE_DATA = new Set(['CONN', 'GREETING', 'EHLO', 'HELO', 'LHLO', 'STARTTLS', 'AUTH PLAIN', 'AUTH LOGIN', 'AUTH CRAM-MD5', 'AUTH XOAUTH2', 'MAIL FROM', 'RCPT TO'])

/** nodemailer's error as an outcome; never its message (it may quote an address). */
export function classifySmtpError(err: unknown): EmailOutcome {
  const e = err as { code?: unknown; command?: unknown; responseCode?: unknown }
  const code = typeof e.code === 'string' ? e.code : 'ERROR'
  const command = typeof e.command === 'string' ? e.command.toUpperCase() : ''
  const response = typeof e.responseCode === 'number' ? e.responseCode : undefined
  const label = `${code}${command ? `:${command}` : ''}${response ? `:${response}` : ''}`.slice(0, 100)
  if (response !== undefined && response >= 500) return { kind: 'permanent', code: label }
  if (response !== undefined && response >= 400) return { kind: 'retryable', code: label }
  if (code === 'ECONNECTION' || code === 'EDNS' || code === 'ECONNREFUSED' || BEFORE_DATA.has(command)) {
    return { kind: 'retryable', code: label }
  }
  return { kind: 'unknown', code: label }
}

export function createEmailSender(opts: { readonly smtpUrl: string; readonly timeoutMs: number }): EmailSender {
  const transport = nodemailer.createTransport({
    url: opts.smtpUrl,
    connectionTimeout: opts.timeoutMs,
    greetingTimeout: opts.timeoutMs,
    socketTimeout: opts.timeoutMs,
    // nodemailer's own logger stays off: it would print envelopes (addresses).
    logger: false,
    debug: false,
  } as Parameters<typeof nodemailer.createTransport>[0])
  return {
    async send(m) {
      try {
        await transport.sendMail({
          from: m.from,
          to: m.to,
          ...(m.replyTo ? { replyTo: m.replyTo } : {}),
          subject: m.subject,
          text: m.text,
          html: m.html,
          messageId: m.messageId,
        })
        return { kind: 'sent', messageId: m.messageId }
      } catch (err) {
        return classifySmtpError(err)
      }
    },
    close: () => transport.close(),
  }
}
