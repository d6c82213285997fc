/**
 * The /_sandbox control API (mounted there): the sandbox's address, stats, reset, faults, rate limits,
 * PortOne V1 payments and the held receipts. A bad spec or body is a 400 with the reason; an unknown
 * endpoint a 404 and a wrong method a 405, all as JSON `{error}`. HEAD is a wrong method on the
 * GET-only endpoints (express would answer it as a GET): the contract predates express here.
 */
import { Router, type NextFunction, type Request, type Response } from 'express'
import type { ProviderName } from '../../src/domain/index.ts'
import { SANDBOX_PROVIDERS, SpecError, faultSpecFromJson, type FaultKind } from '../faults.ts'
import type { PortoneMerchant, PortonePayment, SandboxState } from '../state.ts'
import { incomingOf, send } from './plumbing.ts'

/** Where the sandbox listens, for `GET /_sandbox`. */
export type SandboxAddress = () => { url: string; baseUrls: Readonly<Record<ProviderName, string>> }

export function controlRouter(state: SandboxState, address: SandboxAddress): Router {
  const router = Router({ caseSensitive: true, strict: true })
  const ok = (res: Response, body: unknown) => send(res, { status: 200, body })
  const notAllowed = (req: Request, res: Response) => send(res, { status: 405, body: { error: `${req.method} is not allowed on ${incomingOf(req).pathname}` } })

  router.all('/', (_req, res) => ok(res, address()))
  router.all('/stats', (_req, res) => ok(res, state.stats()))
  router
    .route('/reset')
    .post((_req, res) => {
      state.reset()
      ok(res, { ok: true })
    })
    .all(notAllowed)
  router
    .route('/faults')
    .head(notAllowed)
    .get((_req, res) => ok(res, state.faultsView()))
    .post((req, res) => {
      applyFaultsBody(state, incomingOf(req).body)
      ok(res, state.faultsView())
    })
    .all(notAllowed)
  router
    .route('/rate-limits')
    .head(notAllowed)
    .get((_req, res) => ok(res, state.rateLimitsView()))
    .post((req, res) => {
      state.setRateLimits(specOf(incomingOf(req).body))
      ok(res, state.rateLimitsView())
    })
    .all(notAllowed)
  router
    .route('/portone/payments')
    .post((req, res) => {
      const parsed = JSON.parse(incomingOf(req).body || 'null') as unknown
      const list = Array.isArray(parsed) ? parsed : (parsed as { payments?: unknown } | null)?.payments
      if (!Array.isArray(list)) {
        throw new SpecError('expected a JSON array of {imp_uid, amount, status?, naver?}')
      }
      state.registerPortonePayments(list as PortonePayment[])
      ok(res, { registered: list.length })
    })
    .all(notAllowed)
  router
    .route('/portone/merchants')
    .post((req, res) => {
      const parsed = JSON.parse(incomingOf(req).body || 'null') as unknown
      const list = Array.isArray(parsed) ? parsed : (parsed as { merchants?: unknown } | null)?.merchants
      if (!Array.isArray(list)) throw new SpecError('expected a JSON array of {imp_key, pg_provider}')
      state.registerPortoneMerchants(list as PortoneMerchant[])
      ok(res, { registered: list.length })
    })
    .all(notAllowed)
  router
    .route('/toss/advance')
    .post((req, res) => {
      const o = JSON.parse(incomingOf(req).body || 'null') as { ms?: unknown } | null
      state.tossAdvance(Number(o?.ms))
      ok(res, { ok: true })
    })
    .all(notAllowed)
  router
    .route('/toss/nts-failures')
    .post((req, res) => {
      const o = JSON.parse(incomingOf(req).body || 'null') as { next?: unknown } | null
      if (!Array.isArray(o?.next)) throw new SpecError('expected {"next": ["TS1", …]}')
      state.tossFailNext(o.next as string[])
      ok(res, { next: o.next })
    })
    .all(notAllowed)
  router
    .route('/toss/result-delay')
    .post((req, res) => {
      const o = JSON.parse(incomingOf(req).body || 'null') as { ms?: unknown } | null
      state.tossResultDelay(Number(o?.ms))
      ok(res, { ok: true })
    })
    .all(notAllowed)
  router
    .route('/popbill/file-now')
    .post((_req, res) => {
      state.popbillFileNow()
      ok(res, { ok: true })
    })
    .all(notAllowed)
  router
    .route('/popbill/nts-failures')
    .post((req, res) => {
      const o = JSON.parse(incomingOf(req).body || 'null') as { next?: unknown } | null
      if (!Array.isArray(o?.next)) throw new SpecError('expected {"next": ["TS1", …]}')
      state.popbillFailNext(o.next as string[])
      ok(res, { next: o.next })
    })
    .all(notAllowed)
  router
    .route('/popbill/bulk-delay')
    .post((req, res) => {
      const o = JSON.parse(incomingOf(req).body || 'null') as { ms?: unknown } | null
      state.popbillBulkDelay(o?.ms === null ? null : Number(o?.ms))
      ok(res, { ok: true })
    })
    .all(notAllowed)
  router
    .route('/receipts')
    .head(notAllowed)
    .get((req, res) => {
      const p = incomingOf(req).query.get('provider')
      if (p !== null && !(SANDBOX_PROVIDERS as readonly string[]).includes(p)) {
        throw new SpecError(`unknown provider "${p}" (one of ${SANDBOX_PROVIDERS.join(', ')})`)
      }
      ok(res, { receipts: state.receipts((p as ProviderName | null) ?? undefined) })
    })
    .all(notAllowed)
  router.use((req: Request, res: Response) => send(res, { status: 404, body: { error: `unknown sandbox endpoint ${incomingOf(req).pathname}` } }))
  router.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const known = err instanceof SpecError || err instanceof SyntaxError || err instanceof TypeError
    if (!known) return next(err)
    send(res, { status: 400, body: { error: (err as Error).message } })
  })
  return router
}

/** Body of `POST /_sandbox/faults`: a spec string, `{spec}`, `{provider, next}`, or `{"<provider>": {kind: value}}`. */
function applyFaultsBody(state: SandboxState, text: string): void {
  const t = text.trim()
  if (!t.startsWith('{')) return state.setFaults(specOf(t))
  const obj = JSON.parse(t) as Record<string, unknown>
  if ('next' in obj) {
    if (!Array.isArray(obj.next)) throw new SpecError('next must be an array of fault kinds')
    return state.forceNext((obj.provider ?? '*') as ProviderName | '*', obj.next as FaultKind[])
  }
  if ('spec' in obj) {
    if (typeof obj.spec !== 'string') throw new SpecError('spec must be a string')
    const seed = obj.seed === undefined ? '' : `;seed=${String(obj.seed)}`
    return state.setFaults(`${obj.spec}${seed}`)
  }
  state.setFaults(faultSpecFromJson(obj))
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
