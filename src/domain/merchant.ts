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
  /** Buyer notification after an issue or a cancellation (docs/notifications.md); absent = none. */
  readonly notify?: MerchantNotify
}

export type NotifyChannel = 'email' | 'sms' | 'kakao'
export const NOTIFY_CHANNELS: readonly NotifyChannel[] = ['email', 'sms', 'kakao']

/** Per merchant: which channels are on and who the messages come from. */
export interface MerchantNotify {
  readonly email?: { readonly enabled: boolean; readonly from: string; readonly replyTo?: string | undefined }
  /** `sender`: the merchant's registered 발신번호 (digits). */
  readonly sms?: { readonly enabled: boolean; readonly sender: string }
  /** 알림톡: the KakaoTalk channel's sender key and the approved template's code. */
  readonly kakao?: { readonly enabled: boolean; readonly senderKey: string; readonly templateCode: string }
}

/** The channels a merchant has switched on. */
export function enabledNotifyChannels(m: Pick<Merchant, 'notify'>): NotifyChannel[] {
  return NOTIFY_CHANNELS.filter((c) => m.notify?.[c]?.enabled === true)
}
