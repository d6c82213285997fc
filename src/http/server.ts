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
 *   POST /redrive            the `redrive` command: same function, same selectors (auth, same-origin)
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
import { isValidDate, kstToday, PROVIDERS } from '../domain/index.ts'
import { redrive, type RedriveFilter } from '../jobs/redrive.ts'
import type { ReceiptsQueue } from '../queue/queues.ts'
import { buildReport, ReportNotFoundError } from '../report/report.ts'
import { buildReportDetails } from '../report/report-details.ts'
import { requireAuth, sameOriginWrites } from './auth.ts'
import { recentRuns, runFailures, type FailureFilter } from './dashboard-data.ts'
import { createMetrics } from './metrics.ts'
import { failuresPage, layout, runPage, runsPage } from './pages.ts'
import { html } from '../report/html.ts'

export interface DashboardDeps {
  readonly db: Db
  readonly redis: Redis
  readonly receiptsQueue: ReceiptsQueue
  readonly controlQueue: ReceiptsQueue
  readonly logger: Logger
  readonly serve: AppConfig['serve']
  readonly queuePrefix: string
  readonly now?: () => number
}

export class BadRequestError extends Error {
  override name = 'BadRequestError'
}

const PAGE_SIZE = 100
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
    const [postgres, redis] = await Promise.all([
      probe(() => sql`SELECT 1`.execute(deps.db)),
      probe(() => deps.redis.ping()),
    ])
    res.status(postgres === 'ok' && redis === 'ok' ? 200 : 503).json({ postgres, redis })
  })

  app.use(requireAuth(deps.serve))
  app.use(sameOriginWrites())

  const metrics = createMetrics({
    db: deps.db,
    redis: deps.redis,
    queues: [deps.receiptsQueue, deps.controlQueue],
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
    queues: [deps.receiptsQueue, deps.controlQueue].map(
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

  app.get('/', async (_req, res) => {
    res.type('html').send(runsPage(await recentRuns(deps.db)))
  })

  app.get('/runs/:id', async (req, res) => {
    const runId = idParam(req.params.id)
    const today = kstToday(now())
    const [report, details, dry] = await Promise.all([
      buildReport(deps.db, { runId }, today),
      buildReportDetails(deps.db, { runId }, today),
      redrive(redriveDeps(), { runId }, { dryRun: true }),
    ])
    const count = typeof req.query.redriven === 'string' ? Number(req.query.redriven) : undefined
    const from = typeof req.query.from === 'string' ? Number(req.query.from) : undefined
    const notice =
      count !== undefined && Number.isSafeInteger(count)
        ? { count, from: Number.isSafeInteger(from) ? from : undefined }
        : undefined
    res.type('html').send(runPage(report, details, runId, dry.count, notice))
  })

  app.get('/runs/:id/failures', async (req, res) => {
    const runId = idParam(req.params.id)
    await buildReport(deps.db, { runId }) // 404 for an unknown run
    const filter = failureFilter(req.query)
    const offset = Math.max(0, Number(req.query.offset) || 0)
    const [data, dry] = await Promise.all([
      runFailures(deps.db, runId, filter, { limit: PAGE_SIZE, offset }),
      redrive(redriveDeps(), { runId, ...filter }, { dryRun: true }),
    ])
    res.type('html').send(failuresPage(runId, filter, data, { limit: PAGE_SIZE, offset }, dry.count))
  })

  // The same function and selectors as `cash-receipts redrive`; a form posts urlencoded, a script JSON.
  app.post(
    '/redrive',
    express.urlencoded({ extended: false, limit: '4kb' }),
    express.json({ limit: '4kb' }),
    async (req, res) => {
      const body = (req.body ?? {}) as Record<string, unknown>
      const filter = redriveFilter(body)
      const dryRun = body.dry_run === true || body.dry_run === 'true' || body.dry_run === '1'
      const result = await redrive(redriveDeps(), filter, { dryRun })
      deps.logger.info(
        { ...result, filter, via: 'dashboard' },
        dryRun ? 'dashboard redrive dry run' : 'dashboard redrive',
      )
      if (!req.is('application/x-www-form-urlencoded') || req.accepts(['html', 'json']) === 'json') {
        res.json(result)
        return
      }
      const back =
        result.runId !== null
          ? `/runs/${result.runId}?redriven=${result.count}${filter.runId ? `&from=${filter.runId}` : ''}`
          : '/'
      res.redirect(303, back)
    },
  )

  app.use((_req: Request, res: Response) => {
    res
      .status(404)
      .type('html')
      .send(
        layout(
          'Not found',
          html`<section>
            <p>Nothing here. <a href="/">Settlement runs</a></p>
          </section>`,
        ),
      )
  })
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err)
    if (err instanceof ReportNotFoundError) {
      res
        .status(404)
        .type('html')
        .send(layout('Not found', html`<section><p>${err.message.replace(/^--run: /, '')}</p></section>`))
      return
    }
    if (err instanceof BadRequestError) {
      res.status(400).type('text/plain').send(`${err.message}\n`)
      return
    }
    deps.logger.error({ err: (err as Error)?.message }, 'dashboard request failed')
    res.status(500).type('text/plain').send('internal error\n')
  })
  return app
}

async function probe(fn: () => Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)),
          READY_TIMEOUT_MS,
        )
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
    throw new ReportNotFoundError(`--run: no settlement run with id ${String(v)}`)
  }
  return Number(v)
}

const str = (v: unknown, name: string): string | undefined => {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string' && typeof v !== 'number') throw new BadRequestError(`${name}: expected a string`)
  const s = String(v).trim()
  if (s.length > 100) throw new BadRequestError(`${name}: too long`)
  return s || undefined
}

function failureFilter(q: Record<string, unknown>): FailureFilter {
  return {
    provider: str(q.provider, 'provider'),
    code: str(q.code, 'code'),
    errorClass: str(q.class, 'class'),
  }
}

/** The `redrive` command's selectors, validated as the CLI validates them. */
export function redriveFilter(body: Record<string, unknown>): RedriveFilter {
  const run = str(body.run, 'run')
  if (run !== undefined && !/^\d{1,15}$/.test(run)) {
    throw new BadRequestError(`run: must be a whole number, got "${run}"`)
  }
  const date = str(body.date, 'date')
  if (date !== undefined && !isValidDate(date)) {
    throw new BadRequestError(`date: "${date}" is not a valid YYYY-MM-DD date`)
  }
  const provider = str(body.provider, 'provider')
  if (provider !== undefined && !(PROVIDERS as readonly string[]).includes(provider)) {
    throw new BadRequestError(`provider: must be one of ${PROVIDERS.join(', ')}`)
  }
  return {
    runId: run !== undefined ? Number(run) : undefined,
    date,
    provider,
    code: str(body.code, 'code'),
    errorClass: str(body.class, 'class'),
  }
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
