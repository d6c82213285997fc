/**
 * `cash-receipts serve`: one port for the operators' dashboard.
 *
 *   GET  /healthz            liveness (no auth)
 *   GET  /readyz             Postgres and Redis reachable (no auth), 503 otherwise
 *   GET  /metrics            Prometheus text format (auth)
 *   GET  /queues/…           Bull Board, read-only (auth)
 *   GET  /                   settlement runs (auth)
 *   GET  /runs/:id           one run: totals, per provider/merchant, failure reasons (auth)
 *   GET  /runs/:id/failures  failed receipts with provider/class/code filters (auth)
 *   (every list: ?merchant= filters by merchant, ?size= the page size, ?after= / ?before= the
 *   keyset cursor its next / previous links carry; see keyset.ts and list-controls.ts)
 *   POST /redrive            the `redrive` command: same function, same selectors (auth, same-origin)
 *   GET  /search?q=…         a transaction by transaction id, order id or approval number (auth)
 *   POST /search             the search form: the same, and a buyer identifier by its keyed hash (auth, same-origin)
 *   GET  /transactions/:id   one transaction: receipts, amounts, calls, history (auth)
 *   GET  /totals?from=&to=&merchant=  period totals per merchant, purpose and month (auth)
 */
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express, { type NextFunction, type Request, type Response } from 'express'
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { ExpressAdapter } from '@bull-board/express'
import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { AppConfig } from '../config.ts'
import type { Db } from '../db/database.ts'
import type { DataKeys } from '../crypto/pii.ts'
import helmet from 'helmet'
import { kstDateTime, kstToday } from '../domain/index.ts'
import { redrive, RedriveInputError } from '../jobs/redrive.ts'
import type { NotificationsQueue, ReceiptsQueue } from '../queue/queues.ts'
import { buildReport, ReportNotFoundError } from '../report/report.ts'
import { buildReportDetails } from '../report/report-details.ts'
import { allowedHosts, requestActor, requireAuth, sameOriginWrites } from './auth.ts'
import { auditPage, recordAudit } from '../db/audit.ts'
import { knownMerchants, recentRuns, runFailures } from './dashboard-data.ts'
import {
  BadRequestError,
  failureFilterOf,
  failuresQuery,
  pageOf,
  parseParams,
  runsQuery,
  redriveBody,
  redriveFilter,
  runPageQuery,
  searchQuery,
  totalsQuery,
  transactionParams,
} from './params.ts'
import { createMetrics } from './metrics.ts'
import { chooseLanguage, errorPageT, tOf } from './i18n.ts'
import { failuresPage, layout, runPage, runsPage } from './pages.ts'
import { listFilterForm, pager } from './list-controls.ts'
import { readDispatchStats } from '../throttle/dispatch-stats.ts'
import { searchPage, totalsPage, transactionPage } from './receipt-pages.ts'
import { buildPeriodTotals } from '../report/period-totals.ts'
import { searchReceipts, transactionView } from '../report/receipt-history.ts'
import { formatPrintableReceipt } from '../report/printable-receipt.ts'
import { html } from '../report/html.ts'

export interface DashboardDeps {
  readonly db: Db
  readonly redis: Redis
  readonly receiptsQueue: ReceiptsQueue
  readonly controlQueue: ReceiptsQueue
  /** Buyer notifications' queue, when any merchant has notifications on: its depth in /metrics and Bull Board. */
  readonly notificationsQueue?: NotificationsQueue | undefined
  readonly logger: Logger
  readonly serve: AppConfig['serve']
  readonly queuePrefix: string
  /** To search buyer identifiers by their keyed hash (POST /search); without them identifiers are not searched. */
  readonly dataKeys?: DataKeys
  readonly now?: () => number
}

export { BadRequestError, redriveFilter }

const READY_TIMEOUT_MS = 2_000

export function createDashboardApp(deps: DashboardDeps): express.Express {
  const now = deps.now ?? Date.now
  const app = express()
  app.disable('x-powered-by')
  app.set('trust proxy', false)

  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n')
  })
  app.get('/readyz', async (_req, res) => {
    const [postgres, redis] = await Promise.all([probe(() => sql`SELECT 1`.execute(deps.db)), probe(() => deps.redis.ping())])
    res.status(postgres === 'ok' && redis === 'ok' ? 200 : 503).json({ postgres, redis })
  })

  // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example.
  app.use(allowedHosts(deps.serve))
  app.use(securityHeaders())
  app.use(requireAuth(deps.serve))
  app.use(sameOriginWrites())
  app.use(chooseLanguage())

  const metrics = createMetrics({
    db: deps.db,
    redis: deps.redis,
    queues: [deps.receiptsQueue, deps.controlQueue, ...(deps.notificationsQueue ? [deps.notificationsQueue] : [])],
    prefix: deps.queuePrefix,
    logger: deps.logger,
    cacheMs: deps.serve.metricsCacheMs,
    now,
  })
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.render())
  })

  // Bull Board is read-only: retrying, cleaning or removing jobs behind the ledger's back could
  // strand a pending receipt with no job; re-drive (below) is the way to put work back.
  const board = new ExpressAdapter()
  board.setBasePath('/queues')
  createBullBoard({
    queues: [deps.receiptsQueue, deps.controlQueue, ...(deps.notificationsQueue ? [deps.notificationsQueue] : [])].map(
      (q) => new BullMQAdapter(q as Queue, { readOnlyMode: true }),
    ),
    serverAdapter: board,
    options: {
      uiConfig: { boardTitle: 'cash-receipts', miscLinks: [{ text: 'Settlement runs', url: '/' }] },
    },
  })
  app.use('/queues', board.getRouter() as express.Router)

  const redriveDeps = () => ({
    db: deps.db,
    queue: deps.receiptsQueue,
    logger: deps.logger,
    todayKst: kstToday(now()),
  })

  app.get('/', async (req, res) => {
    const q = parseParams(runsQuery, req.query)
    const [runs, merchants, dispatch] = await Promise.all([
      recentRuns(deps.db, pageOf(q), q.merchant),
      knownMerchants(deps.db),
      readDispatchStats(deps.redis, deps.queuePrefix).catch(() => undefined),
    ])
    res.type('html').send(runsPage(runs, dispatch, tOf(res), { merchants, merchant: q.merchant, size: q.size, paged: q.after !== undefined || q.before !== undefined }))
  })

  // Who did what by hand: re-drives, cancels, reconciles, imports (src/db/audit.ts).
  app.get('/audit', async (req, res) => {
    const t = tOf(res)
    const q = parseParams(runsQuery, req.query)
    const paged = q.after !== undefined || q.before !== undefined
    const [page, merchants] = await Promise.all([auditPage(deps.db, pageOf(q), q.merchant), knownMerchants(deps.db)])
    const rows = page.rows
    const json = (o: object) =>
      Object.entries(o)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(' ')
    res.type('html').send(
      layout(
        t('nav.audit'),
        html`<section>${listFilterForm(t, 'audit-filters', merchants, { merchant: q.merchant, size: q.size })}</section>
          <section>
          <table id="audit">
            <thead>
              <tr><th>${t('audit.time')}</th><th>${t('audit.actor')}</th><th>${t('audit.action')}</th><th>${t('audit.selectors')}</th><th>${t('audit.counts')}</th></tr>
            </thead>
            <tbody>
              ${rows.map((a) => html`<tr data-audit="${a.id}"><td>${kstDateTime(a.at)}</td><td>${a.actor}</td><td>${a.action}</td><td>${json(a.selectors)}</td><td>${json(a.counts)}</td></tr>`)}
            </tbody>
          </table>
          ${pager(t, '/audit', { merchant: q.merchant, size: q.size }, page, paged)}
        </section>`,
        { t },
      ),
    )
  })

  app.get('/runs/:id', async (req, res) => {
    const runId = idParam(req.params.id)
    const q = parseParams(runPageQuery, req.query)
    const today = kstToday(now())
    const [report, details, dry] = await Promise.all([
      buildReport(deps.db, { runId }, today),
      buildReportDetails(deps.db, { runId }, today),
      redrive(redriveDeps(), { runId }, { dryRun: true }),
    ])
    const notice = q.redriven !== undefined ? { count: q.redriven, from: q.from } : undefined
    res.type('html').send(runPage(report, details, runId, dry.count, notice, tOf(res)))
  })

  app.get('/runs/:id/failures', async (req, res) => {
    const runId = idParam(req.params.id)
    const q = parseParams(failuresQuery, req.query)
    await buildReport(deps.db, { runId }) // 404 for an unknown run
    const filter = failureFilterOf(q)
    const [data, merchants, dry] = await Promise.all([
      runFailures(deps.db, runId, filter, pageOf(q)),
      knownMerchants(deps.db),
      // what the re-drive form would take: redrive has no merchant selector
      redrive(redriveDeps(), { runId, provider: filter.provider, code: filter.code, errorClass: filter.errorClass }, { dryRun: true }),
    ])
    const list = { merchants, merchant: q.merchant, size: q.size, paged: q.after !== undefined || q.before !== undefined }
    res.type('html').send(failuresPage(runId, filter, data, list, dry.count, tOf(res)))
  })

  // The search box posts its query, so a buyer identifier typed there travels in the body, never in
  // a URL (address bar, history, proxy and access logs, Referer); it is searched by its keyed hash
  // and not reflected: the page shows it masked. GET stays for ids, order ids and approval numbers
  // (links, bookmarks, the result pages' next/previous links) and does not search identifiers.
  const search = async (input: unknown, res: Response, dataKeys: DataKeys | undefined) => {
    const sq = parseParams(searchQuery, input)
    const paged = sq.after !== undefined || sq.before !== undefined
    const [found, merchants] = await Promise.all([searchReceipts(deps.db, sq.q ?? '', { ...pageOf(sq), merchantId: sq.merchant, dataKeys }), knownMerchants(deps.db)])
    // one match straight away opens it (not when paging or filtering: the list is what was asked for)
    if (found.transactions.length === 1 && !paged && !sq.merchant && !found.next) {
      res.redirect(303, tOf(res).href(`/transactions/${encodeURIComponent(found.transactions[0]!.transaction_id)}`))
      return
    }
    res.type('html').send(searchPage(found, tOf(res), { merchants, merchant: sq.merchant, size: sq.size, paged }))
  }
  app.get('/search', async (req, res) => {
    await search(req.query, res, undefined)
  })
  app.post('/search', express.urlencoded({ extended: false, limit: '4kb' }), async (req, res) => {
    await search(req.body ?? {}, res, deps.dataKeys)
  })

  app.get('/totals', async (req, res) => {
    const today = kstToday(now())
    const q = parseParams(totalsQuery, req.query)
    const from = q.from ?? `${today.slice(0, 7)}-01`
    const to = q.to ?? today
    if (from > to) throw new BadRequestError(`from: ${from} is after to ${to}`)
    const merchantId = q.merchant
    const merchants = await deps.db.selectFrom('merchants').select(['id', 'name']).orderBy('id').execute()
    res.type('html').send(totalsPage(await buildPeriodTotals(deps.db, { from, to, merchantId }), merchants, tOf(res)))
  })

  app.get('/transactions/:id/receipt', async (req, res) => {
    const id = parseParams(transactionParams, req.params).id
    const view = id ? await transactionView(deps.db, id) : undefined
    if (!view) throw new ReportNotFoundError(`no transaction ${id ?? ''}`)
    res.type('html').send(formatPrintableReceipt(view, { generatedAt: new Date(now()), t: tOf(res) }))
  })

  app.get('/transactions/:id', async (req, res) => {
    const id = parseParams(transactionParams, req.params).id
    const view = id ? await transactionView(deps.db, id) : undefined
    if (!view) throw new ReportNotFoundError(`no transaction ${id ?? ''}`)
    res.type('html').send(transactionPage(view, tOf(res)))
  })

  // The same function and selectors as `cash-receipts redrive`; a form posts urlencoded, a script JSON.
  app.post('/redrive', express.urlencoded({ extended: false, limit: '4kb' }), express.json({ limit: '4kb' }), async (req, res) => {
    const filter = redriveFilter(req.body)
    const dryRun = parseParams(redriveBody, req.body).dry_run
    const result = await redrive(redriveDeps(), filter, { dryRun })
    if (!dryRun) {
      await recordAudit(deps.db, {
        actor: requestActor(req.headers.authorization, deps.serve),
        action: 'redrive',
        selectors: { run: filter.runId, date: filter.date, provider: filter.provider, code: filter.code, class: filter.errorClass, new_run: result.runId },
        counts: { receipts: result.count },
      })
    }
    deps.logger.info({ ...result, filter, via: 'dashboard' }, dryRun ? 'dashboard redrive dry run' : 'dashboard redrive')
    if (!req.is('application/x-www-form-urlencoded') || req.accepts(['html', 'json']) === 'json') {
      res.json(result)
      return
    }
    const back = result.runId !== null ? `/runs/${result.runId}?redriven=${result.count}${filter.runId ? `&from=${filter.runId}` : ''}` : '/'
    res.redirect(303, tOf(res).href(back))
  })

  app.use((_req: Request, res: Response) => {
    const t = errorPageT(res)
    res
      .status(404)
      .type('html')
      .send(
        layout(
          t('common.notFound'),
          html`<section>
            <p>${t('common.nothingHere')} <a href="${t.href('/')}">${t('common.backToRuns')}</a></p>
          </section>`,
          { t },
        ),
      )
  })
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err)
    if (err instanceof ReportNotFoundError) {
      const t = errorPageT(res)
      const what = err.message.startsWith('no transaction') ? t('common.noTransaction') : t('common.noRun')
      res
        .status(404)
        .type('html')
        .send(layout(t('common.notFound'), html`<section><p>${what} <a href="${t.href('/')}">${t('common.backToRuns')}</a></p></section>`, { t }))
      return
    }
    if (err instanceof RedriveInputError) {
      // The selectors named nothing re-drivable (an unknown run): the caller's mistake, not ours.
      res.status(400).type('text/plain').send('run: no settlement run with that id\n')
      return
    }
    if (err instanceof BadRequestError) {
      res.status(400).type('text/plain').send(`${err.message}\n`)
      return
    }
    // body-parser's refusals (malformed JSON, too large, bad charset) carry their 4xx status.
    const status = (err as { status?: unknown })?.status
    if (typeof status === 'number' && status >= 400 && status < 500) {
      res
        .status(status)
        .type('text/plain')
        .send(`${status === 413 ? 'request body too large' : 'malformed request body'}\n`)
      return
    }
    deps.logger.error({ err: (err as Error)?.message }, 'dashboard request failed')
    res.status(500).type('text/plain').send('internal error\n')
  })
  return app
}

/**
 * helmet's headers with a policy for these pages: scripts only from this origin (the pages have
 * none inline; Bull Board loads its bundles from /queues/static), never framed (clickjacking of the
 * re-drive button), forms post only here, no referrer leaves for another site. Inline styles stay allowed: the pages and Bull Board use
 * them, and a style cannot click a button. No HSTS or upgrade-insecure-requests: `serve` speaks plain
 * HTTP on loopback; TLS and HSTS belong to the proxy in front of it.
 */
function securityHeaders() {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    // Not no-referrer: under it a browser posts the re-drive form with `Origin: null`, which the
    // same-origin check must refuse. same-origin sends nothing to other sites.
    referrerPolicy: { policy: 'same-origin' },
    strictTransportSecurity: false,
  })
}

async function probe(fn: () => Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS)
      }),
    ])
    return 'ok'
  } catch (err) {
    return (err as Error).message || 'error'
  } finally {
    clearTimeout(timer)
  }
}

function idParam(v: unknown): number {
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v)) {
    throw new ReportNotFoundError('--run: no settlement run with that id')
  }
  return Number(v)
}

export interface RunningDashboard {
  readonly url: string
  readonly server: Server
  close(): Promise<void>
}

export async function startDashboard(deps: DashboardDeps): Promise<RunningDashboard> {
  const app = createDashboardApp(deps)
  const server = app.listen(deps.serve.port, deps.serve.host)
  await once(server, 'listening')
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${host}:${addr.port}`,
    server,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
