/** The issue request the provider contract tests send: a fresh key each time, overridable fields. */
import { randomBytes } from 'node:crypto'
import type { IssueRequest } from '../../src/providers/types.ts'

/** `tag` names the suite in the idempotency key (`cr-issue-<key>-<tag>`); `key` defaults to a fresh one. */
export function issueRequest(tag: string, over: Partial<IssueRequest> & { readonly key?: string } = {}): IssueRequest {
  const { key = `CR${randomBytes(9).toString('hex').toUpperCase()}`.slice(0, 20), ...rest } = over
  return {
    providerKey: key,
    idempotencyKey: `cr-issue-${key}-${tag}`,
    portonePayment: false,
    orderName: '진료비',
    identifier: '01012345678',
    identifierType: 'phone',
    purpose: 'deduction',
    amounts: { total: 11_000, supply: 10_000, vat: 1_000, taxFree: 0, serviceFee: 0 },
    tradeDate: '2026-11-21',
    paidAt: '2026-11-21T05:00:00.000Z',
    merchantBusinessNumber: '2208162517',
    ...rest,
  }
}
