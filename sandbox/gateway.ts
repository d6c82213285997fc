/**
 * The SMS / KakaoTalk gateway simulator: the generic wire format src/notify/gateway.ts documents,
 * served standalone (tests: `startGatewaySimulator()`) or under `/gateway` in the sandbox.
 *
 *   POST /v1/messages   Authorization: Bearer <key>, Idempotency-Key: <key>
 *     → 200 { message_id, status: 'accepted', duplicate }   the same key again answers the first
 *       acceptance with duplicate: true and sends nothing (as a real gateway deduplicates)
 *     → 400 { code }   MISSING_IDEMPOTENCY_KEY, INVALID_NUMBER, SMS_TOO_LONG (> 90 EUC-KR bytes),
 *                      TEMPLATE_MISMATCH (kakao without template_code or variables), INVALID_BODY
 *     → 401 { code: 'UNAUTHORIZED' } when an API key is configured and not given
 *
 * Faults (like the provider simulators'): `forceNext([...])` for exact cases, or probabilities
 * `5xx=0.1,429=0.05,400=0.01,timeout_after_commit=0.02,reset_before=0.02` (400: refused for good). `timeout_after_commit` accepts the
 * message and then holds the answer until the client gives up; `reset_before` drops the connection
 * before anything is accepted. Messages are held in memory for inspection (a test tool).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import iconv from 'iconv-lite'

export const GATEWAY_FAULTS = ['5xx', '429', '400', 'timeout_after_commit', 'reset_before'] as const
export type GatewayFault = (typeof GATEWAY_FAULTS)[number]

/**
 * The simulator's own reading of the wire format, on purpose not src/notify/gateway.ts's
 * GatewayMessage: like the provider simulators it is written from the format's description alone and
 * shares no code with the client (.dependency-cruiser.cjs, sandbox-is-not-the-adapters, covers
 * src/notify/), so a field the client misnames or mistypes fails a test here instead of passing on
 * a type both sides share. It parses the snake_case body (`template_code`) itself, and keeps what
 * a test inspects besides (message id, key, time of acceptance).
 */
export interface SimulatedMessage {
  readonly messageId: string
  readonly idempotencyKey: string
  readonly channel: 'sms' | 'lms' | 'kakao'
  readonly to: string
  readonly from: string
  readonly subject?: string
  readonly text: string
  readonly templateCode?: string
  readonly variables?: Readonly<Record<string, string>>
  readonly acceptedAt: number
}

export interface GatewayStats {
  requests: number
  accepted: number
  duplicates: number
  rejected: number
  faults: number
}

export interface GatewaySimulatorOptions {
  /** When set, requests must carry `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string
  readonly hangMs?: number
}

type Answer = { status: number; body: unknown } | { fault: 'hang'; accepted: boolean } | { fault: 'reset' }

/** The simulator's state and request handling, independent of how it is served. */
export class GatewayState {
  readonly messages: SimulatedMessage[] = []
  private readonly byKey = new Map<string, SimulatedMessage>()
  private forced: GatewayFault[] = []
  private probabilities: Partial<Record<GatewayFault, number>> = {}
  stats: GatewayStats = { requests: 0, accepted: 0, duplicates: 0, rejected: 0, faults: 0 }
  private seq = 0

  private readonly opts: GatewaySimulatorOptions
  constructor(opts: GatewaySimulatorOptions = {}) {
    this.opts = opts
  }

  forceNext(faults: readonly GatewayFault[]): void {
    this.forced.push(...faults)
  }

  /** `5xx=0.1,429=0.05,timeout_after_commit=0.02,reset_before=0.01` (empty: none). */
  setFaults(spec: string): void {
    const p: Partial<Record<GatewayFault, number>> = {}
    for (const part of spec
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const [k, v] = part.split('=')
      const n = Number(v)
      if (!(GATEWAY_FAULTS as readonly string[]).includes(k ?? '') || !(n >= 0 && n <= 1)) {
        throw new Error(`gateway fault "${part}": expected <${GATEWAY_FAULTS.join('|')}>=<0..1>`)
      }
      p[k as GatewayFault] = n
    }
    this.probabilities = p
  }

  reset(): void {
    this.messages.length = 0
    this.byKey.clear()
    this.forced = []
    this.stats = { requests: 0, accepted: 0, duplicates: 0, rejected: 0, faults: 0 }
  }

  private drawFault(): GatewayFault | undefined {
    const f = this.forced.shift()
    if (f) return f
    for (const [k, p] of Object.entries(this.probabilities)) {
      if (Math.random() < (p ?? 0)) return k as GatewayFault
    }
    return undefined
  }

  handle(method: string, path: string, headers: IncomingMessage['headers'], text: string): Answer {
    if (method !== 'POST' || path !== '/v1/messages') return { status: 404, body: { code: 'NOT_FOUND' } }
    this.stats.requests++
    const reject = (status: number, code: string) => {
      this.stats.rejected++
      return { status, body: { code, message: code } }
    }
    if (this.opts.apiKey && headers.authorization !== `Bearer ${this.opts.apiKey}`) {
      return reject(401, 'UNAUTHORIZED')
    }
    const key = headers['idempotency-key']
    if (typeof key !== 'string' || !key) return reject(400, 'MISSING_IDEMPOTENCY_KEY')
    const fault = this.drawFault()
    if (fault) this.stats.faults++
    if (fault === 'reset_before') return { fault: 'reset' }
    if (fault === '5xx') return { status: 503, body: { code: 'UNAVAILABLE' } }
    if (fault === '429') return { status: 429, body: { code: 'RATE_LIMITED' } }
    if (fault === '400') return reject(400, 'REJECTED')
    const first = this.byKey.get(key)
    if (first) {
      this.stats.duplicates++
      return { status: 200, body: { message_id: first.messageId, status: 'accepted', duplicate: true } }
    }
    let b: Record<string, unknown>
    try {
      b = JSON.parse(text) as Record<string, unknown>
    } catch {
      return reject(400, 'INVALID_BODY')
    }
    const channel = b.channel
    if (channel !== 'sms' && channel !== 'lms' && channel !== 'kakao') return reject(400, 'INVALID_BODY')
    if (typeof b.to !== 'string' || !/^01\d{8,9}$/.test(b.to)) return reject(400, 'INVALID_NUMBER')
    if (typeof b.from !== 'string' || !b.from || typeof b.text !== 'string' || !b.text) {
      return reject(400, 'INVALID_BODY')
    }
    if (channel === 'sms' && iconv.encode(b.text, 'euc-kr').length > 90) return reject(400, 'SMS_TOO_LONG')
    if (channel === 'kakao' && (typeof b.template_code !== 'string' || typeof b.variables !== 'object' || b.variables === null)) {
      return reject(400, 'TEMPLATE_MISMATCH')
    }
    const message: SimulatedMessage = {
      messageId: `gw-${++this.seq}`,
      idempotencyKey: key,
      channel,
      to: b.to,
      from: b.from,
      ...(typeof b.subject === 'string' ? { subject: b.subject } : {}),
      text: b.text,
      ...(typeof b.template_code === 'string' ? { templateCode: b.template_code, variables: b.variables as Record<string, string> } : {}),
      acceptedAt: Date.now(),
    }
    this.messages.push(message)
    this.byKey.set(key, message)
    this.stats.accepted++
    if (fault === 'timeout_after_commit') return { fault: 'hang', accepted: true }
    return { status: 200, body: { message_id: message.messageId, status: 'accepted', duplicate: false } }
  }

  /** Answers one request on a node:http response (body already read). */
  respond(req: IncomingMessage, res: ServerResponse, path: string, text: string): void {
    const a = this.handle(req.method ?? 'GET', path, req.headers, text)
    if ('fault' in a) {
      if (a.fault === 'reset') req.socket.destroy()
      else setTimeout(() => req.socket.destroy(), this.opts.hangMs ?? 30_000).unref()
      return
    }
    const body = JSON.stringify(a.body)
    res.writeHead(a.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
}

export interface GatewaySimulator {
  readonly url: string
  readonly state: GatewayState
  close(): Promise<void>
}

/** A standalone simulator on its own port (0: any free one). */
export async function startGatewaySimulator(opts: GatewaySimulatorOptions & { readonly port?: number } = {}): Promise<GatewaySimulator> {
  const state = new GatewayState(opts)
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => state.respond(req, res, (req.url ?? '/').split('?')[0]!, Buffer.concat(chunks).toString('utf8')))
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    state,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
