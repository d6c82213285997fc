/**
 * The sandbox HTTP server: one node:http server, each provider under its own prefix (/portone,
 * /portone-v2, /payssam, /nts), plus /_sandbox/* for stats, reset, faults, rate limits and seeding.
 *
 * Per provider request: count → classify (receipt operation? which credential?) → per-credential rate
 * limit → for receipt operations only: fault draw, latency, pre-commit faults, idempotency, commit (the
 * simulator's handler), post-commit faults. Nothing is logged per request.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Logger } from 'pino'
import type { ProviderName } from '../src/domain/index.ts'
import {
  DEFAULT_HANG_MS,
  FAULT_KINDS,
  RateWindow,
  SANDBOX_PROVIDERS,
  SpecError,
  faultSpecFromJson,
  formatFaults,
  parseFaults,
  parseRateLimits,
  pickFault,
  type FaultKind,
  type FaultSpec,
  type RateLimitSpec,
} from './faults.ts'
import { seededRandom } from '../src/demo/seeded-random.ts'
import type { HeldReceipt, ProviderSim, SimRequest, SimResponse } from './sim.ts'
import { createPortoneV1Sim, type PortonePayment } from './providers/portone-v1.ts'
import { createPortoneV2Sim } from './providers/portone-v2/index.ts'
import { createPayssamSim } from './providers/payssam.ts'
import { createNtsSim } from './providers/nts.ts'

export type { PortonePayment }

export interface SandboxOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Fault spec, e.g. `portone:5xx=0.05,timeout_after_commit=0.02,latency=20-80;payssam:5xx=0.1`. */
  readonly faults?: string
  /** Rate-limit spec, e.g. `portone=100,payssam=50,nts/day=1000`. */
  readonly rateLimits?: string
  /** Seeds the fault PRNG (a `seed=N` in the fault spec overrides it). */
  readonly seed?: number
  /** Only start-up, shutdown and internal errors are logged; never identifiers or secrets. */
  readonly logger?: Logger
  /** The providers' clock (token lifetimes, idempotency TTL, KST quota day); rate windows use real time. */
  readonly clock?: () => number
  /** NTS-style issues per credential per KST day (default 1,000,000; `nts/day=N` in rateLimits wins). */
  readonly ntsDailyQuota?: number
}

/** One provider's figures in `GET /_sandbox/stats`. */
export interface ProviderStats {
  requests: number
  issued: number
  cancelled: number
  duplicates_rejected: number
  rate_limited: number
}

/** `GET /_sandbox/stats`. */
export interface SandboxStats {
  providers: Record<ProviderName, ProviderStats>
  /** Largest number of live (not cancelled) receipts held for one payment key, over all providers. */
  max_live_receipts_per_key: number
}

/** A held receipt with its provider, as listed by `GET /_sandbox/receipts`. */
export type ListedReceipt = HeldReceipt & { readonly provider: ProviderName }

export interface Sandbox {
  /** Origin, e.g. `http://127.0.0.1:4010`. */
  readonly url: string
  /** Base URL per provider, e.g. `http://127.0.0.1:4010/portone`. */
  readonly baseUrls: Readonly<Record<ProviderName, string>>
  stats(): SandboxStats
  /** Forgets every receipt, token, payment, counter, rate window and forced fault; keeps the fault spec. */
  reset(): void
  /** Replaces the fault spec (throws SpecError). */
  setFaults(spec: string): void
  /** Replaces the rate limits (throws SpecError). */
  setRateLimits(spec: string): void
  /** Gives the next receipt operations of a provider these faults, in order (tests that need one exact case). */
  forceNext(provider: ProviderName | '*', faults: readonly FaultKind[]): void
  /** The payments PortOne V1 knows: `/receipts/{imp_uid}` takes its amount from them. */
  registerPortonePayments(payments: readonly PortonePayment[]): void
  /** What the simulators hold (identifiers masked). */
  receipts(provider?: ProviderName): ListedReceipt[]
  close(): Promise<void>
}

const MAX_BODY = 1_000_000
const HTML_502 =
  '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n'

/** @portone/server-sdk resolves its paths against the origin of `baseUrl`, so V2 is served there too. */
const V2_AT_ORIGIN =
  /^\/(?:cash-receipts$|payments\/[^/]+\/cash-receipt(?:\/cancel)?$|login\/api-secret$|token\/refresh$)/

const isFaultKind = (k: unknown): k is FaultKind => (FAULT_KINDS as readonly unknown[]).includes(k)

/** Starts the sandbox; resolves once it listens. */
export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const clock = opts.clock ?? Date.now
  if (opts.seed !== undefined && !(Number.isSafeInteger(opts.seed) && opts.seed >= 0)) {
    throw new SpecError(`seed must be a non-negative integer, got ${opts.seed}`)
  }
  const portone = createPortoneV1Sim()
  const nts = createNtsSim({ dailyQuota: opts.ntsDailyQuota ?? null })
  const sims: Record<ProviderName, ProviderSim> = {
    portone,
    'portone-v2': createPortoneV2Sim(),
    payssam: createPayssamSim(),
    nts,
  }

  let faults: FaultSpec = parseFaults(opts.faults)
  let limits: RateLimitSpec = parseRateLimits(opts.rateLimits)
  const applyNtsQuota = () => nts.setDailyQuota(limits.ntsDaily ?? opts.ntsDailyQuota ?? null)
  applyNtsQuota()
  const seedOf = () => faults.seed ?? opts.seed ?? null
  let rand: () => number = Math.random
  const reseed = () => {
    const s = seedOf()
    rand = s === null ? Math.random : seededRandom(s)
  }
  reseed()

  const forced = new Map<ProviderName, FaultKind[]>()
  const windows = new RateWindow()
  const traffic = () =>
    Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, { requests: 0, rate_limited: 0 }])) as Record<
      ProviderName,
      { requests: number; rate_limited: number }
    >
  let counts = traffic()
  const sockets = new Set<Socket>()

  function stats(): SandboxStats {
    let maxLive = 0
    const providers = {} as Record<ProviderName, ProviderStats>
    for (const p of SANDBOX_PROVIDERS) {
      const s = sims[p]
      maxLive = Math.max(maxLive, s.maxLivePerKey())
      providers[p] = {
        requests: counts[p].requests,
        issued: s.counters.issued,
        cancelled: s.counters.cancelled,
        duplicates_rejected: s.counters.duplicates_rejected,
        rate_limited: counts[p].rate_limited + s.counters.rate_limited,
      }
    }
    return { providers, max_live_receipts_per_key: maxLive }
  }

  function reset(): void {
    for (const s of Object.values(sims)) s.reset()
    counts = traffic()
    windows.reset()
    forced.clear()
    reseed()
  }

  function setFaults(spec: string): void {
    faults = parseFaults(spec)
    reseed()
  }

  function setRateLimits(spec: string): void {
    limits = parseRateLimits(spec)
    windows.reset()
    applyNtsQuota()
  }

  function forceNext(provider: ProviderName | '*', list: readonly FaultKind[]): void {
    const names = provider === '*' ? SANDBOX_PROVIDERS : [provider]
    if (provider !== '*' && !SANDBOX_PROVIDERS.includes(provider)) {
      throw new SpecError(
        `unknown provider "${String(provider)}" (one of ${SANDBOX_PROVIDERS.join(', ')} or *)`,
      )
    }
    for (const k of list) {
      if (!isFaultKind(k)) {
        throw new SpecError(`unknown fault "${String(k)}" (one of ${FAULT_KINDS.join(', ')})`)
      }
    }
    for (const n of names) forced.set(n, [...list])
  }

  function listReceipts(provider?: ProviderName): ListedReceipt[] {
    const names = provider ? [provider] : SANDBOX_PROVIDERS
    return names.flatMap((n) => sims[n].receipts().map((r) => ({ provider: n, ...r })))
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      opts.logger?.error({ err: (err as Error).message }, 'sandbox internal error')
      if (!res.headersSent && !res.destroyed) {
        send(res, { status: 500, body: { error: 'sandbox internal error' } })
      }
    })
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.on('clientError', (_err, socket) => socket.destroy())

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Rate windows count a request when it arrives, as a gateway does — not after its body is read.
    const arrivedAt = Date.now()
    const raw = req.url ?? '/'
    const qi = raw.indexOf('?')
    const pathname = qi < 0 ? raw : raw.slice(0, qi)
    const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1))
    const body = await readBody(req)
    if (body === null) return send(res, { status: 413, body: { error: 'request body too large' } })
    if (pathname === '/_sandbox' || pathname.startsWith('/_sandbox/')) {
      return control(req, res, pathname, query, body)
    }

    let name: ProviderName | undefined
    let path = pathname
    for (const p of SANDBOX_PROVIDERS) {
      if (
        pathname.startsWith(`/${p}`) &&
        (pathname.length === p.length + 1 || pathname[p.length + 1] === '/')
      ) {
        name = p
        path = pathname.slice(p.length + 1) || '/'
        break
      }
    }
    if (!name && V2_AT_ORIGIN.test(pathname)) name = 'portone-v2'
    if (!name) return send(res, { status: 404, body: { error: `nothing is served at ${pathname}` } })

    const sim = sims[name]
    counts[name].requests++
    const parsed = parseBody(body, req.headers['content-type'])
    const simReq: SimRequest = {
      method: req.method ?? 'GET',
      path,
      query,
      headers: req.headers,
      bodyText: body,
      body: parsed.body,
      bodyInvalid: parsed.invalid,
      nowMs: clock(),
    }
    const { receiptOp, credential } = sim.classify(simReq)
    const limit = limits.perSecond[name]
    if (limit !== undefined && credential !== null) {
      const waitMs = windows.take(`${name}\u0000${credential}`, limit, arrivedAt)
      if (waitMs > 0) {
        counts[name].rate_limited++
        return send(res, sim.rateLimited(Math.max(1, Math.ceil(waitMs / 1000))))
      }
    }
    if (!receiptOp) return send(res, sim.handle(simReq))

    const f = faults.providers[name]
    const queued = forced.get(name)
    const fault = queued?.length ? queued.shift()! : pickFault(f, rand)
    if (f?.latency) {
      const [lo, hi] = f.latency
      await sleep(lo + Math.floor(rand() * (hi - lo + 1)))
    }
    const hangMs = f?.hangMs ?? DEFAULT_HANG_MS
    switch (fault) {
      case '5xx':
        return send(res, sim.serverError(simReq))
      case 'html':
        return send(res, { status: 502, body: HTML_502, headers: { 'content-type': 'text/html' } })
      case 'reset_before':
        return resetConnection(req)
    }
    const idem = sim.idempotency?.begin(simReq) ?? null
    if (idem && 'early' in idem) {
      // A replay or a 409 is an answer too: the network can still lose it.
      if (fault === 'timeout_before_commit') return hang(req, hangMs)
      return deliver(req, res, idem.early, fault, hangMs)
    }
    const slot = idem?.slot
    if (fault === 'timeout_before_commit') {
      // Still "processing" while it hangs: a retry with the same Idempotency-Key gets 409 meanwhile.
      try {
        return await hang(req, hangMs)
      } finally {
        if (slot) sim.idempotency!.finish(slot, null, clock())
      }
    }
    let committed: SimResponse | null = null
    try {
      committed = sim.handle(simReq)
    } finally {
      if (slot) sim.idempotency!.finish(slot, committed, clock())
    }
    return deliver(req, res, committed, fault, hangMs)
  }

  function control(
    req: IncomingMessage,
    res: ServerResponse,
    pathname: string,
    query: URLSearchParams,
    text: string,
  ) {
    const method = req.method ?? 'GET'
    try {
      switch (pathname) {
        case '/_sandbox':
        case '/_sandbox/':
          return send(res, { status: 200, body: { url: sandbox.url, baseUrls: sandbox.baseUrls } })
        case '/_sandbox/stats':
          return send(res, { status: 200, body: stats() })
        case '/_sandbox/reset':
          if (method !== 'POST') break
          reset()
          return send(res, { status: 200, body: { ok: true } })
        case '/_sandbox/faults':
          if (method === 'POST') applyFaultsBody(text)
          else if (method !== 'GET') break
          return send(res, { status: 200, body: faultsView() })
        case '/_sandbox/rate-limits':
          if (method === 'POST') setRateLimits(specOf(text))
          else if (method !== 'GET') break
          return send(res, { status: 200, body: { perSecond: limits.perSecond, ntsDaily: limits.ntsDaily } })
        case '/_sandbox/portone/payments': {
          if (method !== 'POST') break
          const parsed = JSON.parse(text || 'null') as unknown
          const list = Array.isArray(parsed) ? parsed : (parsed as { payments?: unknown } | null)?.payments
          if (!Array.isArray(list)) {
            throw new SpecError('expected a JSON array of {imp_uid, amount, status?, naver?}')
          }
          registerPortonePayments(list as PortonePayment[])
          return send(res, { status: 200, body: { registered: list.length } })
        }
        case '/_sandbox/receipts': {
          if (method !== 'GET') break
          const p = query.get('provider')
          if (p !== null && !(SANDBOX_PROVIDERS as readonly string[]).includes(p)) {
            throw new SpecError(`unknown provider "${p}" (one of ${SANDBOX_PROVIDERS.join(', ')})`)
          }
          return send(res, {
            status: 200,
            body: { receipts: listReceipts((p as ProviderName | null) ?? undefined) },
          })
        }
        default:
          return send(res, { status: 404, body: { error: `unknown sandbox endpoint ${pathname}` } })
      }
      return send(res, { status: 405, body: { error: `${method} is not allowed on ${pathname}` } })
    } catch (err) {
      const known = err instanceof SpecError || err instanceof SyntaxError || err instanceof TypeError
      if (!known) throw err
      return send(res, { status: 400, body: { error: (err as Error).message } })
    }
  }

  /** Body of `POST /_sandbox/faults`: a spec string, `{spec}`, `{provider, next}`, or `{"<provider>": {kind: value}}`. */
  function applyFaultsBody(text: string): void {
    const t = text.trim()
    if (!t.startsWith('{')) return setFaults(specOf(t))
    const obj = JSON.parse(t) as Record<string, unknown>
    if ('next' in obj) {
      if (!Array.isArray(obj.next)) throw new SpecError('next must be an array of fault kinds')
      return forceNext((obj.provider ?? '*') as ProviderName | '*', obj.next as FaultKind[])
    }
    if ('spec' in obj) {
      if (typeof obj.spec !== 'string') throw new SpecError('spec must be a string')
      const seed = obj.seed === undefined ? '' : `;seed=${String(obj.seed)}`
      return setFaults(`${obj.spec}${seed}`)
    }
    setFaults(faultSpecFromJson(obj))
  }

  function faultsView() {
    const next: Partial<Record<ProviderName, FaultKind[]>> = {}
    for (const [p, list] of forced) if (list.length) next[p] = [...list]
    return { spec: formatFaults(faults), faults: faults.providers, seed: seedOf(), next }
  }

  function registerPortonePayments(list: readonly PortonePayment[]): void {
    portone.registerPayments(list)
  }

  const sandbox: Sandbox = {
    url: '',
    baseUrls: {} as Record<ProviderName, string>,
    stats,
    reset,
    setFaults,
    setRateLimits,
    forceNext,
    registerPortonePayments,
    receipts: listReceipts,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await closed
    },
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const host =
    addr.address === '0.0.0.0'
      ? '127.0.0.1'
      : addr.address === '::'
        ? '[::1]'
        : addr.family === 'IPv6'
          ? `[${addr.address}]`
          : addr.address
  const url = `http://${host}:${addr.port}`
  Object.assign(sandbox, {
    url,
    baseUrls: Object.freeze(Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, `${url}/${p}`]))),
  })
  return sandbox
}

/** A spec sent as a raw body or as a JSON string. */
function specOf(text: string): string {
  const t = text.trim()
  if (t.startsWith('"')) return String(JSON.parse(t))
  if (t.startsWith('{')) {
    const o = JSON.parse(t) as { spec?: unknown }
    if (typeof o.spec !== 'string') throw new SpecError('expected {"spec": "…"}')
    return o.spec
  }
  return t
}

/** Sends what was committed, or loses it the way the post-commit fault says. */
async function deliver(
  req: IncomingMessage,
  res: ServerResponse,
  answer: SimResponse,
  fault: FaultKind | null,
  hangMs: number,
): Promise<void> {
  switch (fault) {
    case 'timeout_after_commit':
      return hang(req, hangMs)
    case 'reset':
      return resetConnection(req)
    case 'malformed': {
      const full = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body)
      const cut = full.slice(0, Math.max(1, Math.floor(full.length / 2)))
      return send(res, {
        status: 200,
        body: cut,
        headers: { 'content-type': 'application/json; charset=utf-8' },
      })
    }
    default:
      return send(res, answer)
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Holds the request unanswered until the client goes away or `ms` pass, then drops the connection. */
async function hang(req: IncomingMessage, ms: number): Promise<void> {
  const socket = req.socket
  if (!socket.destroyed) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        socket.off('close', done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      socket.once('close', done)
    })
  }
  socket.destroy()
}

/** Drops the connection without an answer (a TCP RST where the platform allows it). */
function resetConnection(req: IncomingMessage): void {
  const s = req.socket as Socket & { resetAndDestroy?: () => Socket }
  if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy()
  else s.destroy()
}

/** The body as text, or null when it exceeds MAX_BODY. */
function readBody(req: IncomingMessage): Promise<string | null> {
  if (
    req.headers['content-length'] === '0' ||
    (req.method === 'GET' && !req.headers['transfer-encoding'] && !req.headers['content-length'])
  ) {
    req.resume()
    return Promise.resolve('')
  }
  return new Promise((resolve, reject) => {
    let size = 0
    let tooBig = false
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) tooBig = true
      else chunks.push(c)
    })
    req.on('end', () => resolve(tooBig ? null : Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function parseBody(
  text: string,
  contentType: string | undefined,
): { body: Record<string, unknown> | null; invalid: boolean } {
  if (!text || !text.trim()) return { body: null, invalid: false }
  if (contentType?.includes('application/x-www-form-urlencoded')) {
    return { body: Object.fromEntries(new URLSearchParams(text)), invalid: false }
  }
  try {
    const v = JSON.parse(text) as unknown
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? { body: v as Record<string, unknown>, invalid: false }
      : { body: null, invalid: true }
  } catch {
    // A form body sent without its Content-Type.
    if (/^[^{[\s"][^=&]*=/.test(text)) {
      return { body: Object.fromEntries(new URLSearchParams(text)), invalid: false }
    }
    return { body: null, invalid: true }
  }
}

function send(res: ServerResponse, r: SimResponse): void {
  if (res.headersSent || res.destroyed) return
  const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body)
  res.writeHead(r.status, {
    'content-type': 'application/json; charset=utf-8',
    ...r.headers,
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}
