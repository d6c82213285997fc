/** A merchant as every layer sees it; config's MerchantConfig adds the provider credentials' contents. */
import type { ProviderName } from './provider.ts'

export interface Merchant {
  /** Letters, digits, _ and - (it travels in provider keys and limiter keys). */
  readonly id: string
  readonly name: string
  /** 사업자등록번호: 10 digits, hyphens allowed; stored encrypted. */
  readonly businessNumber: string
  /** 현금영수증 의무발행업종: must issue even without a buyer identifier. */
  readonly mandatoryIssuer: boolean
  /** The providers the merchant has a credential for. */
  readonly providers: { readonly [P in ProviderName]?: unknown }
}
