/**
 * ONE contract suite run against every adapter and its sandbox over real HTTP. Each case asserts the
 * outcome the adapter maps AND what the sandbox holds afterwards.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startSandbox, type Sandbox } from '../../sandbox/index.ts'
import { createProvider, type CredentialsByProvider } from '../../src/providers/registry.ts'
import type { CashReceiptProvider, IssueRequest } from '../../src/providers/types.ts'
import type { ProviderName, ProviderOutcome } from '../../src/domain/index.ts'
import { issueRequest } from '../helpers/issue-request.ts'

export interface ContractFixture<N extends ProviderName> {
  readonly provider: N
  readonly credentials: CredentialsByProvider[N]
  readonly badCredentials: CredentialsByProvider[N]
  /** Whether the provider uses tokens with a lifetime (PortOne V1, NTS). */
  readonly tokenLifetimeMs?: number
  /** What a documented "not processed" 5xx maps to for an issue. */
  readonly serverErrorOnIssue: ProviderOutcome['kind']
  /**
   * The faults that make an issue end in that server error (default one `5xx`). PortOne V2 reads the
   * receipt after a PG failure and repeats under a derived key, so its read must fail too.
   */
  readonly serverErrorFaults?: readonly '5xx'[]
  /** NTS does not deduplicate: a second issue is a second receipt. */
  readonly deduplicates: boolean
  /** PortOne V2 replays the original answer for a repeated Idempotency-Key. */
  readonly idempotencyReplay?: boolean
  /** PortOne V1 payments must exist at the sandbox before /receipts/{imp_uid}. */
  readonly prepare?: (sandbox: Sandbox, req: IssueRequest) => void
  readonly request?: Partial<IssueRequest>
}

export function defineProviderContract<N extends ProviderName>(f: ContractFixture<N>) {
  describe(`${f.provider} adapter against its sandbox`, () => {
    let sandbox: Sandbox
    let clock = Date.now()
    const make = (credentials = f.credentials, readMs = 400) =>
      createProvider(f.provider, {
        baseUrl: sandbox.baseUrls[f.provider],
        credentials,
        timeouts: { connectMs: 300, readMs },
        // One try per call: the cases below assert the mapping of a single answer.
        retry: { retries: 0, minTimeoutMs: 1, maxRetryTimeMs: 1 },
      } as never)
    let adapter: CashReceiptProvider

    beforeAll(async () => {
      sandbox = await startSandbox({ port: 0, clock: () => clock })
    })
    afterAll(async () => {
      await sandbox?.close()
    })
    beforeEach(() => {
      sandbox.reset()
      sandbox.setFaults('')
      clock = Date.now()
      adapter = make()
    })

    const newRequest = (): IssueRequest => issueRequest('contract', f.request)
    const issue = async (req = newRequest()) => {
      f.prepare?.(sandbox, req)
      return { req, outcome: await adapter.issue(req) }
    }
    const held = () => Object.values(sandbox.stats().providers).reduce((n, p) => n + p.issued - p.cancelled, 0)
    const lookup = (req: IssueRequest) => adapter.lookup({ providerKey: req.providerKey, portonePayment: req.portonePayment, amounts: req.amounts })

    it('issues, and the sandbox holds one live receipt with an approval number', async () => {
      const { req, outcome } = await issue()
      expect(outcome.kind).toBe('issued')
      if (outcome.kind === 'issued') expect(outcome.receipt.approvalNumber).toMatch(/^\d{9}$/)
      expect(held()).toBe(1)
      const found = await lookup(req)
      expect(found.kind).toBe('issued')
    })

    it('answers a duplicate issue per the provider: rejected and read back, or (NTS) a second receipt', async () => {
      const { req } = await issue()
      // A fresh Idempotency-Key, as after a re-drive: the provider's own key (paymentId, bill_id…) must decide.
      const again = await adapter.issue({ ...req, idempotencyKey: `${req.idempotencyKey}-r1` })
      if (f.deduplicates) {
        expect(again.kind).toBe('already_issued')
        expect(held()).toBe(1)
        expect(sandbox.stats().max_live_receipts_per_key).toBe(1)
      } else {
        expect(again.kind).toBe('issued')
        expect(sandbox.stats().max_live_receipts_per_key).toBe(2)
      }
    })

    if (f.idempotencyReplay) {
      it('replays the first answer for the same Idempotency-Key without issuing again', async () => {
        const { req, outcome } = await issue()
        const replay = await adapter.issue(req)
        expect(replay.kind).toBe('issued')
        if (replay.kind === 'issued' && outcome.kind === 'issued') expect(replay.receipt.approvalNumber).toBe(outcome.receipt.approvalNumber)
        expect(held()).toBe(1)
      })
    }

    it('looks up a key that was never issued as not_found', async () => {
      const found = await lookup(newRequest())
      expect(found.kind).toBe('not_found')
    })

    it('cancels, and the lookup and the sandbox then show it cancelled', async () => {
      const { req, outcome } = await issue()
      const approval = outcome.kind === 'issued' ? outcome.receipt.approvalNumber : null
      const providerReceiptId = outcome.kind === 'issued' ? outcome.receipt.providerReceiptId : null
      const cancelled = await adapter.cancel({
        providerKey: req.providerKey,
        portonePayment: req.portonePayment,
        idempotencyKey: `cr-cancel-${req.providerKey}-1`,
        original: { approvalNumber: approval, tradeDate: req.tradeDate, amounts: req.amounts, providerReceiptId },
        amounts: req.amounts,
        partial: false,
        reason: 1,
        purpose: req.purpose,
      })
      expect(cancelled.kind).toBe('cancelled')
      expect((await lookup(req)).kind).toBe('cancelled')
      expect(held()).toBe(0)
    })

    it('maps bad credentials to permanent and issues nothing', async () => {
      adapter = make(f.badCredentials)
      const { outcome } = await issue()
      expect(outcome.kind).toBe('permanent')
      expect(held()).toBe(0)
    })

    if (f.tokenLifetimeMs) {
      it('survives token expiry: a 401 refreshes the token once and the call succeeds', async () => {
        await issue()
        clock += f.tokenLifetimeMs! + 60_000 // the sandbox expires the token; the adapter still holds it
        const { outcome } = await issue()
        expect(outcome.kind).toBe('issued')
        expect(held()).toBe(2)
      })
    }

    it('maps throttling to rate_limited with a retry-after', async () => {
      await sandbox.close()
      sandbox = await startSandbox({ port: 0, clock: () => clock, rateLimits: `${f.provider}=2` })
      adapter = make()
      const outcomes: ProviderOutcome[] = []
      for (let i = 0; i < 5; i++) outcomes.push((await issue()).outcome)
      const limited = outcomes.find((o) => o.kind === 'rate_limited')
      expect(limited).toBeDefined()
      if (limited?.kind === 'rate_limited') expect(limited.retryAfterMs).toBeGreaterThanOrEqual(0)
      expect(sandbox.stats().providers[f.provider]!.rate_limited).toBeGreaterThan(0)
      await sandbox.close()
      sandbox = await startSandbox({ port: 0, clock: () => clock })
    })

    it(`maps a server error to ${f.serverErrorOnIssue} and the sandbox holds nothing`, async () => {
      const req = newRequest()
      await warmToken(req)
      sandbox.forceNext(f.provider, f.serverErrorFaults ?? ['5xx'])
      const { outcome } = await issue(req)
      expect(outcome.kind).toBe(f.serverErrorOnIssue)
      expect(held()).toBe(0)
      expect((await lookup(req)).kind).toBe('not_found')
    })

    it('maps a timeout before commit to unknown_outcome, and the lookup finds nothing', async () => {
      const req = newRequest()
      await warmToken(req)
      sandbox.forceNext(f.provider, ['timeout_before_commit'])
      const { outcome } = await issue(req)
      expect(outcome.kind).toBe('unknown_outcome')
      expect(held()).toBe(0)
      expect((await lookup(req)).kind).toBe('not_found')
    })

    for (const fault of ['timeout_after_commit', 'reset', 'malformed'] as const) {
      it(`maps ${fault} to unknown_outcome, and the lookup finds the receipt`, async () => {
        const req = newRequest()
        await warmToken(req)
        sandbox.forceNext(f.provider, [fault])
        const { outcome } = await issue(req)
        expect(outcome.kind).toBe('unknown_outcome')
        expect(held()).toBe(1)
        expect((await lookup(req)).kind).toBe('issued')
      })
    }

    /** Fetch the token (if any) first, so a forced fault hits the receipt call itself. */
    async function warmToken(req: IssueRequest) {
      f.prepare?.(sandbox, req)
      await adapter.lookup({ providerKey: `warm${req.providerKey}`.slice(0, 20), portonePayment: req.portonePayment, amounts: req.amounts })
    }
  })
}
