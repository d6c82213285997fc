/** What jobs need to reach a merchant's provider: the adapter and its shared throttle. */
import type { ProviderName } from '../config.ts'
import type { CashReceiptProvider } from '../providers/types.ts'
import type { Throttle } from '../throttle/throttle.ts'

export interface ProviderSource {
  get(merchantId: string, provider: ProviderName): { readonly provider: CashReceiptProvider; readonly throttle: Throttle }
  /** The merchant's own 사업자등록번호, decrypted, for providers that need it (NTS-style). */
  merchantBusinessNumber(merchantId: string): Promise<string>
}
