/**
 * A synthetic business day of cash-type transactions for the demo, benchmarks and tests: every
 * provider and method, valid identifiers of each kind, buyers without identifiers (self-issue at
 * mandatory issuers, skipped elsewhere), tax-free parts and service fees. Deterministic per seed.
 */
import { IMPORT_COLUMNS, toCsvText, type ProviderName } from '../domain/index.ts'
import { seededRandom } from './seeded-random.ts'

export interface GeneratedDay {
  readonly header: readonly string[]
  readonly rows: readonly Record<string, string>[]
  /** PortOne V1 payments (imp_uid) the sandbox must know about. */
  readonly portonePayments: readonly {
    imp_uid: string
    amount: number
    naver?: { amount_total: number; amount_by_npoint: number; amount_by_primary: number; amount_supply: number; amount_vat: number }
  }[]
}

/** The demo files' header: every column the import format defines (domain/transaction.ts), in its order. */
export const IMPORT_HEADER = IMPORT_COLUMNS

/** The seeded PRNG the sandbox's fault draws use too (mulberry32), so generated days are reproducible per seed. */
export const mulberry32 = seededRandom

export function validBrn(rand: () => number): string {
  for (;;) {
    const d = Array.from({ length: 9 }, () => Math.floor(rand() * 10))
    if (d[0] === 0) continue
    const w = [1, 3, 7, 1, 3, 7, 1, 3, 5]
    let s = d.reduce((acc, x, i) => acc + x * w[i]!, 0)
    s += Math.floor((d[8]! * 5) / 10)
    return d.join('') + String((10 - (s % 10)) % 10)
  }
}

const digits = (rand: () => number, n: number) => Array.from({ length: n }, () => Math.floor(rand() * 10)).join('')

/** `businessDate` (YYYY-MM-DD, KST); paid_at values fall inside that KST day, never after `notAfterMs`. */
export function generateDay(opts: {
  businessDate: string
  count: number
  merchants: readonly { id: string; mandatoryIssuer: boolean }[]
  providers?: readonly ProviderName[]
  seed?: number
  notAfterMs?: number
  idPrefix?: string
}): GeneratedDay {
  const rand = mulberry32(opts.seed ?? 20261122)
  const providers = opts.providers ?? (['portone', 'portone-v2', 'payssam', 'nts', 'toss', 'popbill'] as const)
  const dayStart = Date.parse(`${opts.businessDate}T00:00:00+09:00`)
  const dayEnd = Math.min(dayStart + 86_400_000 - 1, (opts.notAfterMs ?? Number.MAX_SAFE_INTEGER) - 60_000)
  const prefix = opts.idPrefix ?? `T${opts.businessDate.replace(/-/g, '')}`
  const rows: Record<string, string>[] = []
  const payments: GeneratedDay['portonePayments'][number][] = []
  const items = ['진료비', '수강료', '꽃다발', '교재비', '상담료', '정기권']
  for (let i = 0; i < opts.count; i++) {
    const merchant = opts.merchants[i % opts.merchants.length]!
    const provider = providers[Math.floor(rand() * providers.length)]!
    const big = rand() < 0.35
    const amount = big ? 100_000 + Math.floor(rand() * 900) * 1_000 : 1_000 + Math.floor(rand() * 98) * 1_000 + Math.floor(rand() * 10) * 10
    const transactionId = `${prefix}-${String(i + 1).padStart(6, '0')}`
    let method = (['cash', 'bank_transfer', 'virtual_account'] as const)[Math.floor(rand() * 3)]! as string
    let paymentRef = ''
    if (provider === 'portone' && rand() < 0.5) {
      paymentRef = `imp_${digits(rand, 12)}`
      method = rand() < 0.2 ? 'naverpay' : method === 'cash' ? 'bank_transfer' : method
    } else if (provider === 'portone-v2') {
      paymentRef = `pay-${transactionId}`
    }
    const r = rand()
    let identifier = ''
    let identifierType = ''
    let purpose = 'deduction'
    if (r < 0.45) identifier = `010${digits(rand, 8)}`
    else if (r < 0.6) {
      identifier = validBrn(rand)
      purpose = 'expense'
    } else if (r < 0.72) {
      identifier = `15442020${digits(rand, 10)}`
      identifierType = 'card'
    } // else: no identifier → self-issue at mandatory issuers (≥ ₩100,000), skipped elsewhere
    const taxFree = rand() < 0.1 ? Math.floor(amount / 4) : 0
    const serviceFee = rand() < 0.05 ? Math.floor(amount / 10) : 0
    const paidAt = new Date(dayStart + Math.floor(rand() * Math.max(1, dayEnd - dayStart)))
    rows.push({
      transaction_id: transactionId,
      merchant_id: merchant.id,
      provider,
      payment_ref: paymentRef,
      order_id: `ORD-${transactionId}`,
      order_name: items[Math.floor(rand() * items.length)]!,
      method,
      amount: String(amount),
      tax_free_amount: method === 'naverpay' ? '0' : String(taxFree),
      service_fee: method === 'naverpay' ? '0' : String(serviceFee),
      paid_at: paidAt.toISOString().replace('Z', '+00:00'),
      identifier,
      identifier_type: identifierType,
      purpose,
      buyer_name: identifier ? '홍길동' : '',
      buyer_email: '',
      buyer_tel: '',
      status: 'completed',
      refunded_amount: '0',
    })
    if (paymentRef.startsWith('imp_')) {
      const cash = method === 'naverpay' ? Math.floor(amount * 0.6) : amount
      const vat = Math.floor((2 * cash + 11) / 22)
      payments.push({
        imp_uid: paymentRef,
        amount,
        ...(method === 'naverpay' ? { naver: { amount_total: cash, amount_by_npoint: 0, amount_by_primary: cash, amount_supply: cash - vat, amount_vat: vat } } : {}),
      })
    }
  }
  return { header: IMPORT_HEADER, rows, portonePayments: payments }
}

export function toCsv(day: GeneratedDay): string {
  return toCsvText(day.header, day.rows)
}
