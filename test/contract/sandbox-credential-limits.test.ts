/**
 * One credential's own rate limit at the sandbox (`provider@credential=N`): contracts differ between
 * merchants of one provider, and the fairness benchmark needs a limited merchant beside an unlimited
 * one at the same provider. Over real HTTP, through the PaySsam adapter.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { parseRateLimits, SpecError, startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider } from '../../src/providers/registry.ts'
import type { IssueRequest } from '../../src/providers/types.ts'
import { issueRequest } from '../helpers/issue-request.ts'

const request = (): IssueRequest => issueRequest('limits')

describe('sandbox: a rate limit of one credential', () => {
  let sandbox: Sandbox | undefined
  afterEach(async () => {
    await sandbox?.close()
    sandbox = undefined
  })

  it('parses provider@credential=N beside the provider-wide limits, and refuses malformed tokens', () => {
    const spec = parseRateLimits('payssam=50,payssam@apikeyslow=5,nts/day=10')
    expect(spec.perSecond).toEqual({ payssam: 50 })
    expect(spec.perCredential).toEqual({ 'payssam@apikeyslow': 5 })
    expect(spec.ntsDaily).toBe(10)
    expect(() => parseRateLimits('*@apikeyslow=5')).toThrow(SpecError)
    expect(() => parseRateLimits('payssam@apikeyslow/day=5')).toThrow(SpecError)
    expect(() => parseRateLimits('payssam@=5')).toThrow(SpecError)
    expect(() => parseRateLimits('payssam@apikeyslow=0')).toThrow(SpecError)
  })

  it('throttles only that credential; it wins over its provider-wide limit', async () => {
    sandbox = await startSandbox({ port: 0, rateLimits: 'payssam@apikeyslow=2' })
    const adapter = (apikey: string) =>
      createProvider('payssam', {
        baseUrl: sandbox!.baseUrls.payssam,
        credentials: { apikey, member: `member-${apikey}`, merchant: `shop-${apikey}` },
        timeouts: { connectMs: 500, readMs: 2_000 },
        retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
      } as never)
    const slow = adapter('apikeyslow')
    const fast = adapter('apikeyfast')
    const slowKinds: string[] = []
    const fastKinds: string[] = []
    for (let i = 0; i < 4; i++) slowKinds.push((await slow.issue(request())).kind)
    for (let i = 0; i < 8; i++) fastKinds.push((await fast.issue(request())).kind)
    expect(slowKinds.slice(0, 2)).toEqual(['issued', 'issued'])
    expect(slowKinds.slice(2)).toContain('rate_limited')
    expect(fastKinds.every((k) => k === 'issued')).toBe(true)
    expect(sandbox.stats().providers.payssam.rate_limited).toBe(slowKinds.filter((k) => k === 'rate_limited').length)

    // A credential's own limit wins over its provider's, in both directions.
    await sandbox.close()
    sandbox = await startSandbox({ port: 0, rateLimits: 'payssam=1,payssam@apikeyfast=100' })
    const fast2 = createProvider('payssam', {
      baseUrl: sandbox.baseUrls.payssam,
      credentials: { apikey: 'apikeyfast', member: 'member-f', merchant: 'shop-f' },
      timeouts: { connectMs: 500, readMs: 2_000 },
      retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
    } as never)
    const kinds: string[] = []
    for (let i = 0; i < 5; i++) kinds.push((await fast2.issue(request())).kind)
    expect(kinds.every((k) => k === 'issued')).toBe(true)
  })
})
