/**
 * The sandbox HTTP server: one node:http server, each provider under its own prefix
 * (/portone, /portone-v2, /payssam, /nts), plus /_sandbox/* for stats, reset, faults and seeding.
 * Per request: rate limit (per credential) → fault draw → commit (the simulator) → post-commit fault.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Logger } from 'pino'
import type { ProviderName } from '../config.ts'
import { parseFaults, parseRateLimits, pickFault, RateWindow, seededRandom, SANDBOX_PROVIDERS, SpecError, type FaultKind, type FaultSpec } from './faults.ts'
import type { ProviderSim, SimRequest, SimResponse } from './sim.ts'
import { createPortoneV1Sim, type PortonePayment } from './providers/portone-v1.ts'
import { createPortoneV2Sim } from './providers/portone-v2.ts'
import { createPayssamSim } from './providers/payssam.ts'
import { createNtsSim } from './providers/nts.ts'

export type { PortonePayment }

export interface SandboxOptions {
  readonly port?: number
  readonly host?: string
  readonly faults?: string
  readonly rateLimits?: string
  readonly seed?: number
  readonly logger?: Logger
  readonly clock?: () => number
  /** NTS-style issue quota per credential per KST day (default 1,000,000). */
  readonly ntsDailyQuota?: number
}

export interface SandboxStats {
  providers: Record<string, { requests: number; issued: number; cancelled: number; duplicates_rejected: number; rate_limited: number }>
  max_live_receipts_per_key: number
}

export interface Sandbox {
  readonly url: string
  readonly baseUrls: Record<ProviderName, string>
  stats(): SandboxStats
  reset(): void
  setFaults(spec: string): void
  /** Fail the next requests of a provider with these faults, in order (for tests that need one exact case). */
  forceNext(provider: ProviderName, faults: readonly FaultKind[]): void
  registerPortonePayments(payments: readonly PortonePayment[]): void
  close(): Promise<void>
}

const MAX_BODY = 1_000_000

export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const clock = opts.clock ?? Date.now
  const portone = createPortoneV1Sim()
  const sims: Record<ProviderName, ProviderSim> = {
    portone: portone.sim,
    'portone-v2': createPortoneV2Sim(),
    payssam: createPayssamSim(),
    nts: createNtsSim({ dailyQuota: opts.ntsDailyQuota ?? 1_000_000 }),
  }
  let faults: FaultSpec = parseFaults(opts.faults)
  const limits = parseRateLimits(opts.rateLimits)
  const rand = opts.seed !== undefined ? seededRandom(opts.seed) : Math.random
  const forced = new Map<ProviderName, FaultKind[]>()
  const windows = new RateWindow()
  const traffic = () => Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, { requests: 0, rate_limited: 0 }])) as Record<ProviderName, { requests: number; rate_limited: number }>
  let counts = traffic()
  const sockets = new Set<Socket>()

  const stats = (): SandboxStats => {
    let maxLive = 0
    const providers: SandboxStats['providers'] = {}
    for (const p of SANDBOX_PROVIDERS) {
      const s = sims[p]
      for (const n of s.livePerKey()) if (n > maxLive) maxLive = n
      providers[p] = { requests: counts[p].requests, ...s.counters, rate_limited: counts[p].rate_limited }
    }
    return { providers, max_live_receipts_per_key: maxLive }
  }
  const reset = () => {
    for (const s of Object.values(sims)) s.reset()
    counts = traffic()
    windows.reset()
    forced.clear()
  }

  const server = createServer((req, res) => {
    void route(req, res).catch((err) => {
      opts.logger?.error({ err: (err as Error).message }, 'sandbox error')
      if (!res.headersSent) send(res, { status: 500, body: { error: 'sandbox internal error' } })
    })
  })
  server.keepAliveTimeout = 30_000
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })

  async function route(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://sandbox')
    const bodyText = await readBody(req)
    if (url.pathname.startsWith('/_sandbox/')) return control(url, req.method ?? 'GET', bodyText, res)
    let name = SANDBOX_PROVIDERS.find((p) => url.pathname === `/${p}` || url.pathname.startsWith(`/${p}/`))
    let path = name ? url.pathname.slice(name.length + 1) || '/' : url.pathname
    // @portone/server-sdk resolves paths against the origin (new URL('/cash-receipts', baseUrl)), so
    // the V2 cash-receipt API is also served there; no other provider uses these paths at the root.
    if (!name && (path.startsWith('/cash-receipts') || /^\/payments\/[^/]+\/cash-receipt/.test(path))) name = 'portone-v2'
    if (!name) return send(res, { status: 404, body: { error: `no provider at ${url.pathname}` } })
    path = path || '/'
    const sim = sims[name]
    const simReq: SimRequest = {
      method: req.method ?? 'GET',
      path,
      query: url.searchParams,
      headers: req.headers,
      bodyText,
      body: parseBody(bodyText),
      nowMs: clock(),
    }
    counts[name].requests++
    const limit = limits[name]
    const cred = sim.credentialOf(simReq)
    if (limit && cred && !windows.allow(`${name}\u0000${cred}`, limit, Date.now())) {
      counts[name].rate_limited++
      return send(res, sim.rateLimited(1))
    }
    if (!sim.isReceiptOp(simReq)) return send(res, sim.handle(simReq))

    const f = faults[name]
    if (f?.latency) await sleep(f.latency[0] + Math.floor(rand() * (f.latency[1] - f.latency[0] + 1)))
    const early = sim.preflight?.(simReq) ?? null
    if (early) return send(res, early)
    const queued = forced.get(name)
    const fault = queued?.length ? queued.shift()! : pickFault(f, rand)
    const hangMs = f?.hangMs ?? 30_000
    let committed: SimResponse | null = null
    try {
      switch (fault) {
        case '5xx':
          return send(res, sim.serverError())
        case 'html':
          return send(res, { status: 502, body: '<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>', headers: { 'content-type': 'text/html' } })
        case 'reset_before':
          return req.socket.destroy()
        case 'timeout_before_commit':
          return await hang(req, hangMs)
      }
      committed = sim.handle(simReq)
      switch (fault) {
        case 'timeout_after_commit':
          return await hang(req, hangMs)
        case 'reset':
          return req.socket.destroy()
        case 'malformed': {
          const text = JSON.stringify(committed.body)
          return send(res, { status: 200, body: text.slice(0, Math.max(1, Math.floor(text.length / 2))), headers: { 'content-type': 'application/json' } })
        }
        default:
          return send(res, committed)
      }
    } finally {
      sim.settle?.(simReq, committed)
    }
  }

  function control(url: URL, method: string, bodyText: string, res: ServerResponse) {
    const body = parseBody(bodyText)
    try {
      if (url.pathname === '/_sandbox/stats') return send(res, { status: 200, body: stats() })
      if (url.pathname === '/_sandbox/reset' && method === 'POST') {
        reset()
        return send(res, { status: 200, body: { ok: true } })
      }
      if (url.pathname === '/_sandbox/faults') {
        if (method === 'GET') return send(res, { status: 200, body: { faults } })
        if (body && typeof body.provider === 'string' && Array.isArray(body.next)) {
          sandbox.forceNext(body.provider as ProviderName, body.next as FaultKind[])
        } else {
          sandbox.setFaults(body && typeof body.spec === 'string' ? body.spec : bodyText.trim().startsWith('{') ? '' : bodyText)
        }
        return send(res, { status: 200, body: { faults } })
      }
      if (url.pathname === '/_sandbox/portone/payments' && method === 'POST') {
        const list = Array.isArray(body) ? body : JSON.parse(bodyText)
        portone.registerPayments(list as PortonePayment[])
        return send(res, { status: 200, body: { registered: (list as unknown[]).length } })
      }
      if (url.pathname === '/_sandbox/receipts') {
        const p = url.searchParams.get('provider') as ProviderName | null
        const names = p ? [p] : SANDBOX_PROVIDERS
        return send(res, { status: 200, body: { receipts: names.flatMap((n) => (sims[n]?.receipts() ?? []).map((r) => ({ provider: n, ...r }))) } })
      }
    } catch (err) {
      return send(res, { status: 400, body: { error: (err as Error).message } })
    }
    return send(res, { status: 404, body: { error: 'unknown sandbox endpoint' } })
  }

  const sandbox: Sandbox = {
    url: '',
    baseUrls: {} as Record<ProviderName, string>,
    stats,
    reset,
    setFaults(spec) {
      faults = parseFaults(spec)
    },
    forceNext(provider, list) {
      if (!SANDBOX_PROVIDERS.includes(provider)) throw new SpecError(`unknown provider ${provider}`)
      forced.set(provider, [...list])
    },
    registerPortonePayments: (p) => portone.registerPayments(p),
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve())
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address
  const url = `http://${host}:${addr.port}`
  Object.assign(sandbox, { url, baseUrls: Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, `${url}/${p}`])) })
  return sandbox
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms))
}

/** Holds the request without answering until the client gives up, then drops the connection. */
async function hang(req: IncomingMessage, ms: number) {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms)
    req.socket.once('close', () => {
      clearTimeout(t)
      resolve()
    })
  })
  req.socket.destroy()
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size <= MAX_BODY) chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function parseBody(text: string): Record<string, unknown> | null {
  if (!text) return null
  try {
    const v = JSON.parse(text) as unknown
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null
  } catch {
    if (!text.includes('=')) return null
    return Object.fromEntries(new URLSearchParams(text))
  }
}

function send(res: ServerResponse, r: SimResponse) {
  if (res.headersSent || res.destroyed) return
  const text = typeof r.body === 'string' ? r.body : JSON.stringify(r.body)
  res.writeHead(r.status, { 'content-type': 'application/json; charset=utf-8', ...r.headers, 'content-length': Buffer.byteLength(text) })
  res.end(text)
}
