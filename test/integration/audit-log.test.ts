/**
 * Issue 21, attack 9: operator actions leave an audit trail — who (dashboard user, token, OS user),
 * what, with which selectors and counts, when.
 */
import { userInfo } from 'node:os'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { RunningDashboard } from '../../src/http/server.ts'
import { createTestEnv, type TestEnv } from '../helpers/test-env.ts'
import { runCli } from '../helpers/pipeline.ts'

let env: TestEnv
let dash: RunningDashboard
const basic = `Basic ${Buffer.from('ops-kim:audit-test-password').toString('base64')}`

beforeAll(async () => {
  env = await createTestEnv({ env: { DASHBOARD_USER: 'ops-kim', DASHBOARD_PASSWORD: 'audit-test-password', DASHBOARD_TOKEN: 'audit-test-token-123' } })
  dash = await env.app.startDashboard({ port: 0, host: '127.0.0.1' })
}, 60_000)
afterAll(async () => {
  await dash?.close()
  await env?.close()
})

it('records dashboard re-drives with the user or token, and CLI reconcile with the OS user; dry runs leave nothing', async () => {
  const post = (authorization: string, body: object) =>
    fetch(`${dash.url}/redrive`, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  expect((await post(basic, { date: '2026-11-03', dry_run: true })).status).toBe(200)
  expect(await env.app.recentAudit()).toEqual([])
  expect((await post(basic, { date: '2026-11-03', provider: 'nts' })).status).toBe(200)
  expect((await post('Bearer audit-test-token-123', { date: '2026-11-02' })).status).toBe(200)

  const r = await runCli(['reconcile', '--date', '2026-11-01', '--json'], env.env({ DASHBOARD_USER: '', DASHBOARD_PASSWORD: '', DASHBOARD_TOKEN: '' }))
  expect(r.code, r.stderr).toBe(0)

  const rows = await env.app.recentAudit()
  expect(rows.map((a) => [a.actor, a.action])).toEqual([
    [`os:${userInfo().username}`, 'reconcile'],
    ['token:DASHBOARD_TOKEN', 'redrive'],
    ['dashboard:ops-kim', 'redrive'],
  ])
  expect(rows[2]).toMatchObject({ selectors: { date: '2026-11-03', provider: 'nts' }, counts: { receipts: 0 } })
  expect(rows[1]!.selectors).toMatchObject({ date: '2026-11-02' })
  expect(rows[0]).toMatchObject({ selectors: { date: '2026-11-01' }, counts: { checked: 0, repaired: 0 } })
  for (const a of rows) expect(Date.now() - a.at.getTime()).toBeLessThan(120_000)

  // Shown in the dashboard.
  const page = await (await fetch(`${dash.url}/audit`, { headers: { authorization: basic } })).text()
  expect(page).toContain('dashboard:ops-kim')
  expect(page).toContain('token:DASHBOARD_TOKEN')
  expect(page.match(/data-audit="/g)).toHaveLength(3)
}, 60_000)

it('lists the operator actions taken since a run started in its report', async () => {
  const settled = await env.app.settle({ businessDate: '2026-11-04', trigger: 'manual' })
  expect(settled.runId).toBeTruthy()
  const r = await runCli(['reconcile', '--date', '2026-11-04', '--json'], env.env({ DASHBOARD_USER: '', DASHBOARD_PASSWORD: '', DASHBOARD_TOKEN: '' }))
  expect(r.code, r.stderr).toBe(0)
  const rep = await runCli(['report', '--run', String(settled.runId), '--json'], env.env())
  expect(rep.code, rep.stderr).toBe(0)
  const report = JSON.parse(rep.stdout) as { operator_actions: { actor: string; action: string; selectors: Record<string, unknown>; at: string }[] }
  // The earlier test's actions came before this run started: only the reconcile is listed.
  expect(report.operator_actions).toEqual([
    expect.objectContaining({ actor: `os:${userInfo().username}`, action: 'reconcile', selectors: expect.objectContaining({ date: '2026-11-04' }) }),
  ])
  expect(Number.isNaN(Date.parse(report.operator_actions[0]!.at))).toBe(false)
}, 60_000)
