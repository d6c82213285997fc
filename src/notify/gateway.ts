/**
 * The SMS / KakaoTalk gateway: one small interface, so any vendor (NHN Cloud, Solapi, Aligo, …) fits
 * behind an adapter of a few dozen lines; one HTTP implementation of the generic wire format below,
 * which the development simulator (sandbox/gateway.ts) serves.
 *
 *   send(message, idempotencyKey) → sent | retryable | permanent | unknown
 *
 * - `sent`: the gateway accepted the message (a repeated key answers with the first acceptance).
 * - `retryable`: surely not accepted (connection refused, 429, 5xx before acceptance): send again.
 * - `permanent`: refused for good (bad number, template mismatch, auth): sending again cannot help.
 * - `unknown`: the request may have been accepted (timeout or reset after it was written). Sending
 *   again with the SAME idempotency key is safe: the gateway answers with the first acceptance.
 *
 * Wire format (HTTP JSON): `POST {base}/v1/messages`, headers `Authorization: Bearer <api key>` and
 * `Idempotency-Key: <key>`, body `{ channel: 'sms'|'lms'|'kakao', to, from, subject?, text,
 * template_code?, variables? }`; answers `200 { message_id, status: 'accepted', duplicate? }`, 4xx
 * `{ code, message }`. The adapter never puts the number, the text or an answer body in an outcome:
 * outcomes are logged and stored.
 */

/**
 * What a vendor adapter sends. sandbox/gateway.ts declares its own type for the same wire body on
 * purpose: the simulator is written independently of this client, so a test cannot pass on a
 * misreading both would share (the lint rule sandbox-is-not-the-adapters keeps it so).
 */
export interface GatewayMessage {
  readonly channel: 'sms' | 'lms' | 'kakao'
  /** The buyer's number, digits only. */
  readonly to: string
  /** SMS/LMS: the merchant's 발신번호; Kakao: the channel's sender key. */
  readonly from: string
  readonly subject?: string
  readonly text: string
  readonly templateCode?: string
  readonly variables?: Readonly<Record<string, string>>
}

export type GatewayOutcome =
  | { readonly kind: 'sent'; readonly messageId: string }
  | { readonly kind: 'retryable'; readonly code: string }
  | { readonly kind: 'permanent'; readonly code: string }
  | { readonly kind: 'unknown'; readonly code: string }

export interface MessageGateway {
  send(message: GatewayMessage, idempotencyKey: string): Promise<GatewayOutcome>
}

export interface HttpGatewayOptions {
  readonly baseUrl: string
  readonly apiKey: string | undefined
  readonly timeoutMs: number
  readonly fetch?: typeof globalThis.fetch
}

/** Network errors that mean the request never reached the gateway (safe to send again). */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])

function causeCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined
  for (let i = 0; e && i < 5; i++) {
    if (typeof e.code === 'string') return e.code
    e = e.cause as typeof e
  }
  return undefined
}

export function createHttpGateway(opts: HttpGatewayOptions): MessageGateway {
  const doFetch = opts.fetch ?? globalThis.fetch
  return {
    async send(message, idempotencyKey) {
      let res: Response
      try {
        res = await doFetch(`${opts.baseUrl}/v1/messages`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'idempotency-key': idempotencyKey,
            ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
          },
          body: JSON.stringify({
            channel: message.channel,
            to: message.to,
            from: message.from,
            ...(message.subject ? { subject: message.subject } : {}),
            text: message.text,
            ...(message.templateCode ? { template_code: message.templateCode, variables: message.variables ?? {} } : {}),
          }),
          signal: AbortSignal.timeout(opts.timeoutMs),
        })
      } catch (err) {
        const code = causeCode(err) ?? ((err as Error).name === 'TimeoutError' ? 'TIMEOUT' : 'NETWORK')
        return NOT_SENT.has(code) ? { kind: 'retryable', code } : { kind: 'unknown', code }
      }
      let body: { message_id?: unknown; code?: unknown } = {}
      try {
        body = (await res.json()) as typeof body
      } catch {
        // an unreadable body: judged by the status alone below
      }
      if (res.ok) {
        return typeof body.message_id === 'string' ? { kind: 'sent', messageId: body.message_id } : { kind: 'unknown', code: `HTTP_${res.status}_NO_ID` }
      }
      const code = typeof body.code === 'string' ? body.code.slice(0, 50) : `HTTP_${res.status}`
      if (res.status === 429 || res.status === 503 || res.status === 502) return { kind: 'retryable', code }
      // A 500 or 504 may come after the gateway took the message: the same key again is safe.
      if (res.status >= 500) return { kind: 'unknown', code }
      return { kind: 'permanent', code }
    },
  }
}
