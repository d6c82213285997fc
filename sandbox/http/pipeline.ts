/**
 * The fault pipeline: how one provider request is served. Each provider has its prefix (/portone,
 * /portone-v2, /payssam, /nts); PortOne V2 is served at the origin too, as @portone/server-sdk
 * resolves its paths against the origin of its baseUrl.
 *
 * Per request: count → classify (receipt operation? which credential?) → per-credential rate limit →
 * for receipt operations only: the provider's processing time (Popbill's, when set), fault draw,
 * latency, pre-commit faults, idempotency, commit (the
 * simulator's handler), post-commit faults. A `5xx` is a pre-commit fault, except at a provider whose
 * failures complete (PortOne V2, `failedCall`): there it is the committed answer, replayed for its
 * Idempotency-Key. Nothing is logged per request.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Router, type Request, type Response } from 'express'
import type { ProviderName } from '../../src/domain/index.ts'
import { SANDBOX_PROVIDERS, type FaultKind } from '../faults.ts'
import type { SimRequest, SimResponse } from '../sim.ts'
import type { SandboxState } from '../state.ts'
import { hang, incomingOf, parseBody, resetConnection, send } from './plumbing.ts'

const HTML_502 = '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n'

/** @portone/server-sdk resolves its paths against the origin of `baseUrl`, so V2 is served there too. */
const V2_AT_ORIGIN = /^\/(?:cash-receipts$|payments\/[^/]+\/cash-receipt(?:\/cancel)?$|login\/api-secret$|token\/refresh$)/

/** Every provider under its prefix, then PortOne V2 at the origin; anything else falls through. */
export function providerRouter(state: SandboxState): Router {
  const router = Router({ caseSensitive: true, strict: true })
  for (const name of SANDBOX_PROVIDERS) {
    const prefix = `/${name}`
    router.use(prefix, (req: Request, res: Response) => {
      const path = incomingOf(req).pathname.slice(prefix.length) || '/'
      return serveProvider(state, name, path, req, res)
    })
  }
  router.use((req: Request, res: Response, next) => {
    const { pathname } = incomingOf(req)
    if (!V2_AT_ORIGIN.test(pathname)) return next()
    return serveProvider(state, 'portone-v2', pathname, req, res)
  })
  return router
}

/** One request to a provider's simulator, through rate limits and (for receipt operations) faults. */
async function serveProvider(state: SandboxState, name: ProviderName, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { arrivedAt, query, body } = incomingOf(req)
  const sim = state.sim(name)
  state.countRequest(name)
  const parsed = parseBody(body, req.headers['content-type'])
  const simReq: SimRequest = {
    method: req.method ?? 'GET',
    path,
    query,
    headers: req.headers,
    bodyText: body,
    body: parsed.body,
    bodyInvalid: parsed.invalid,
    nowMs: state.clock(),
  }
  const { receiptOp, credential } = sim.classify(simReq)
  const waitMs = state.takeRateSlot(name, credential, arrivedAt)
  if (waitMs > 0) return send(res, sim.rateLimited(Math.max(1, Math.ceil(waitMs / 1000))))
  if (!receiptOp) return send(res, sim.handle(simReq))

  // What the call costs at the provider itself, before its outcome is decided; not a fault (no draw).
  const processingMs = state.processingMs(name)
  if (processingMs > 0) await sleep(processingMs)
  const { fault, latencyMs, hangMs } = state.drawFault(name)
  if (latencyMs !== null) await sleep(latencyMs)
  switch (fault) {
    case '5xx':
      if (!sim.failedCall) return send(res, sim.serverError(simReq))
      break // a failure the provider completes: through the idempotency layer below
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
      if (slot) sim.idempotency!.finish(slot, null, state.clock())
    }
  }
  let committed: SimResponse | null = null
  try {
    committed = fault === '5xx' && sim.failedCall ? sim.failedCall(simReq) : sim.handle(simReq)
  } finally {
    if (slot) sim.idempotency!.finish(slot, committed, state.clock())
  }
  return deliver(req, res, committed, fault, hangMs)
}

/** Sends what was committed, or loses it the way the post-commit fault says. */
async function deliver(req: IncomingMessage, res: ServerResponse, answer: SimResponse, fault: FaultKind | null, hangMs: number): Promise<void> {
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
