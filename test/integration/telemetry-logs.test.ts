/**
 * What a worker tells the people who run it: one log line per receipt outcome (run, receipt,
 * provider, outcome, latency), and OpenTelemetry traces through bullmq-otel when an OTLP endpoint is
 * configured — received here by a local HTTP endpoint standing in for the collector.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createApp, type App } from '../../src/app.ts'
import { loadDemoConfig } from '../../src/demo/defaults.ts'
import { startTracing, type Tracing } from '../../src/telemetry/tracing.ts'
import { createTestEnv, eventually, type TestEnv } from '../helpers/test-env.ts'
import { importDay, settle, waitForRun } from '../helpers/pipeline.ts'

let sandbox: Sandbox
let env: TestEnv
let collector: Server
let collectorUrl: string
const exports: { contentType: string; body: string }[] = []
const lines: Record<string, unknown>[] = []
let tracing: Tracing
let app: App

beforeAll(async () => {
  collector = createServer((req, res) => {
    let body = ''
    req.on('data', (d) => (body += d))
    req.on('end', () => {
      if (req.url === '/v1/traces') exports.push({ contentType: req.headers['content-type'] ?? '', body })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r))
  collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`
  sandbox = await startSandbox({ port: 0 })
  env = await createTestEnv({ sandboxUrl: sandbox.url })
  const config = loadDemoConfig(
    env.env({
      WORKER_ATTEMPTS: '2',
      OTEL_EXPORTER_OTLP_ENDPOINT: collectorUrl,
      OTEL_SERVICE_NAME: 'crt-telemetry',
    }),
  )
  tracing = await startTracing(config.otel)
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>)
      cb()
    },
  })
  app = createApp(config, { logger: pino({ level: 'info' }, sink), telemetry: tracing.telemetry })
  app.startWorker({ concurrency: 4 })
}, 120_000)

afterAll(async () => {
  await app?.close()
  await tracing?.shutdown()
  await env?.close()
  await sandbox?.close()
  collector?.close()
})

describe('worker telemetry', () => {
  it('is off, with nothing to pass to BullMQ, when no OTLP endpoint is configured', async () => {
    const off = await startTracing(loadDemoConfig({}).otel)
    expect(off.telemetry).toBeUndefined()
    await off.shutdown()
  })

  it('logs one line per receipt outcome and exports the jobs as traces', async () => {
    sandbox.setFaults('nts:5xx=1')
    await importDay(app, {
      businessDate: '2026-11-03',
      count: 24,
      seed: 41,
      providers: ['portone-v2', 'nts'],
    })
    const runId = (await settle(app, '2026-11-03')).runId!
    const report = await waitForRun(app, runId, 120_000)
    expect(report.totals.failed).toBeGreaterThan(0)

    const outcomes = () => lines.filter((l) => l.msg === 'receipt outcome')
    // The failed receipts' last line comes with the job's failure: wait for all of them.
    await eventually(async () => outcomes().filter((l) => l.outcome === 'failed').length === report.totals.failed)
    // Skipped receipts never become jobs (settle decides them); every other receipt ends in one line.
    const finals = outcomes().filter((l) => l.outcome !== 'retry')
    expect(finals).toHaveLength(report.totals.issued + report.totals.failed)
    for (const l of outcomes()) {
      expect(l).toMatchObject({
        runId,
        provider: expect.stringMatching(/^(portone-v2|nts)$/),
        latencyMs: expect.any(Number),
      })
      expect(typeof l.receiptId).toBe('number')
    }
    expect(finals.filter((l) => l.outcome === 'issued')).toHaveLength(report.totals.issued)
    expect(new Set(finals.filter((l) => l.outcome === 'failed').map((l) => l.provider))).toEqual(new Set(['nts']))
    expect(outcomes().some((l) => l.outcome === 'retry' && l.attempt === 1)).toBe(true)
    expect(new Set(finals.map((l) => l.receiptId)).size).toBe(finals.length)

    await tracing.shutdown() // flushes the batch
    expect(exports.length).toBeGreaterThan(0)
    expect(exports[0]!.contentType).toMatch(/json/)
    const spans = exports.flatMap((e) => {
      const doc = JSON.parse(e.body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] }
          scopeSpans: { spans: { name: string }[] }[]
        }[]
      }
      return doc.resourceSpans.flatMap((rs) => {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue
        return rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ service, name: s.name })))
      })
    })
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['crt-telemetry']))
    const names = new Set(spans.map((s) => s.name))
    expect([...names].some((n) => /addBulk|add/.test(n) && n.includes('receipts'))).toBe(true)
    expect([...names].some((n) => /process/.test(n) && n.includes('receipts'))).toBe(true)
  })
})
