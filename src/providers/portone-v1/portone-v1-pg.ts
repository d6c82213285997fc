/**
 * The PG-specific fields of a PortOne V1 issue (`POST /receipts/{imp_uid}` and
 * `/receipts/external/{merchant_uid}`), per the `x-portone-per-pg` notes of PortOne's V1 schema:
 *
 * | PG          | required besides identifier                                   |
 * |-------------|---------------------------------------------------------------|
 * | ksnet       | product_type, buyer_name; identifier digits only (no hyphen)  |
 * | smartro_v2  | type, buyer_name, buyer_tel                                   |
 * | welcome     | type, buyer_tel, corp_reg_no; external also pay_method (trans/vbank) |
 * | kicc, settle| identifier_type                                               |
 * | nice_v2     | identifier_type, type; no 국세청현금영수증카드 number via the API |
 * | daou        | company_name, company_tel, corp_reg_no (imp_uid receipts)      |
 *
 * `type` and `identifier_type` are sent for every PG. A field the PG requires that the transaction does
 * not carry makes the issue fail here, before any call, with a permanent outcome naming the field.
 */
import type { Method, ProviderOutcome } from '../../domain/index.ts'
import type { IssueRequest } from '../types.ts'
import type { PortoneV1Credentials } from './portone-v1-credentials.ts'

/** Our payment methods as the V1 `pay_method` (welcome, external receipts); the others have no value there. */
const PAY_METHOD: Partial<Record<Method, 'trans' | 'vbank'>> = { bank_transfer: 'trans', virtual_account: 'vbank' }

const missing = (field: string, why: string): { readonly refused: ProviderOutcome } => ({
  refused: { kind: 'permanent', meta: { httpStatus: null, providerCode: 'PG_FIELD_MISSING', message: `${field} ${why}`, latencyMs: 0 } },
})

/** The fields to add for the merchant's PG, or a permanent outcome when one cannot be filled. */
export function pgFields(creds: PortoneV1Credentials, req: IssueRequest): { readonly fields: Record<string, string> } | { readonly refused: ProviderOutcome } {
  const pg = creds.pg
  const out: Record<string, string> = {}
  if (!pg) return { fields: out }
  const name = req.buyer?.name
  // The buyer's phone: given, or the identifier when that is a phone number (the same person's).
  const tel = req.buyer?.tel ?? (req.identifierType === 'phone' ? req.identifier : undefined)
  if (pg === 'ksnet' || pg === 'nice_v2') out.product_type = creds.productType ?? 'real'
  if (pg === 'ksnet' || pg === 'smartro_v2') {
    if (!name) return missing('buyer_name', `is required by ${pg} and the transaction has no buyer name`)
    out.buyer_name = name
  }
  if (pg === 'smartro_v2' || pg === 'welcome') {
    if (!tel) return missing('buyer_tel', `is required by ${pg} and the transaction has no buyer phone`)
    out.buyer_tel = tel
  }
  if (pg === 'welcome' || (pg === 'daou' && req.portonePayment)) out.corp_reg_no = req.merchantBusinessNumber
  if (pg === 'daou' && req.portonePayment) {
    out.company_name = creds.companyName!
    out.company_tel = creds.companyTel!
  }
  if (pg === 'welcome' && !req.portonePayment) {
    // The V1 schema's pay_method takes only trans (계좌이체) and vbank (가상계좌).
    const payMethod = req.paymentMethod ? PAY_METHOD[req.paymentMethod] : undefined
    if (!payMethod) {
      return missing(
        'pay_method',
        req.paymentMethod
          ? `is required by welcome for external receipts and takes trans or vbank only; a ${req.paymentMethod} payment cannot be receipted through welcome`
          : 'is required by welcome for external receipts and the payment method is not known',
      )
    }
    out.pay_method = payMethod
  }
  if (pg === 'nice_v2' && req.identifierType === 'card') {
    return missing('identifier', 'nice_v2 issues no receipt for a 국세청현금영수증카드 number through the API')
  }
  return { fields: out }
}
