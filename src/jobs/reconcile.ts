/**
 * D+1 reconcile: compare the ledger with what each provider holds for a business date's receipts.
 * - provider holds a live receipt, ledger says failed/pending → recorded as issued (repaired)
 * - ledger says issued, provider has none → flagged (reconcile_flag), never silently changed
 * - ledger says issued, provider says cancelled → recorded as cancelled
 * Also lists receipts past their legal deadline (business date + 4 days) that are not issued.
 */
import type { Logger } from 'pino'
import type { Db } from '../db/database.ts'
import { flagReconcile, markReconciled, repairFromProvider } from '../db/ledger.ts'
import type { ProviderSource } from './provider-source.ts'

export interface ReconcileResult {
  readonly businessDate: string
  readonly checked: number
  readonly matched: number
  readonly repaired: { transaction_id: string; provider: string; from: string; to: string }[]
  readonly flagged: { transaction_id: string; provider: string; flag: string }[]
  readonly lookupErrors: number
  readonly overdue: { transaction_id: string; state: string; deadline: string }[]
}

export async function reconcileDay(
  deps: { db: Db; providers: ProviderSource; logger: Logger; concurrency?: number },
  businessDate: string,
  todayKst: string,
): Promise<ReconcileResult> {
  const { db } = deps
  const rows = await db
    .selectFrom('receipts')
    .selectAll()
    .where('kind', '=', 'issue')
    .where('trade_date', '=', businessDate)
    .where('state', 'in', ['issued', 'failed', 'pending', 'cancelled'])
    .orderBy('id')
    .execute()
  const result: { -readonly [K in keyof ReconcileResult]: ReconcileResult[K] } = { businessDate, checked: 0, matched: 0, repaired: [], flagged: [], lookupErrors: 0, overdue: [] }
  let i = 0
  const worker = async () => {
    while (i < rows.length) {
      const r = rows[i++]!
      const { provider, throttle } = deps.providers.get(r.merchant_id, r.provider)
      const o = await throttle.schedule(() =>
        provider.lookup({
          providerKey: r.provider_key,
          portonePayment: r.portone_payment,
          amounts: { total: r.total_amount, supply: r.supply_amount, vat: r.vat_amount, taxFree: r.tax_free_amount, serviceFee: r.service_fee },
        }),
      )
      result.checked++
      const at = { transaction_id: r.transaction_id, provider: r.provider }
      if (o.kind === 'issued' || o.kind === 'cancelled') {
        const held = o.kind === 'issued' ? 'issued' : 'cancelled'
        if (r.state === held) {
          result.matched++
          await markReconciled(db, r.id, held)
        } else if (r.state === 'failed' || r.state === 'pending' || (r.state === 'issued' && held === 'cancelled')) {
          // Only rows nobody is working on move (the state read, never issuing); see repairFromProvider.
          if (await repairFromProvider(db, r.id, r.state, held, o.receipt)) result.repaired.push({ ...at, from: r.state, to: held })
        } else {
          result.flagged.push({ ...at, flag: `ledger ${r.state}, provider ${held}` })
          await flagReconcile(db, r.id, r.state, `provider ${held}`)
        }
      } else if (o.kind === 'not_found') {
        if (r.state === 'issued' || r.state === 'cancelled') {
          result.flagged.push({ ...at, flag: `ledger ${r.state}, provider has no receipt` })
          await flagReconcile(db, r.id, r.state, 'missing at provider')
        } else {
          result.matched++
        }
      } else {
        result.lookupErrors++
      }
    }
  }
  await Promise.all(Array.from({ length: deps.concurrency ?? 8 }, worker))

  const overdue = await db
    .selectFrom('receipts')
    .select(['transaction_id', 'state', 'deadline'])
    .where('kind', '=', 'issue')
    .where('state', 'in', ['pending', 'issuing', 'failed'])
    .where('deadline', '<', todayKst)
    .orderBy('deadline')
    .limit(1_000)
    .execute()
  result.overdue.push(...overdue)
  deps.logger.info({ businessDate, checked: result.checked, repaired: result.repaired.length, flagged: result.flagged.length }, 'reconcile done')
  return result
}
