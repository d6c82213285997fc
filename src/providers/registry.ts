/** The only place that knows every adapter: provider name → factory and credential schema. */
import type { ProviderName } from '../domain/index.ts'
import type { CashReceiptProvider, ProviderDeps } from './types.ts'
import { createPortoneV1Provider } from './portone-v1/portone-v1-provider.ts'
import { createPortoneV2Provider } from './portone-v2/portone-v2-provider.ts'
import { createPayssamProvider } from './payssam/payssam-provider.ts'
import { createNtsProvider } from './nts/nts-provider.ts'
import { createTossProvider } from './toss/toss-provider.ts'
import { createPopbillProvider } from './popbill/popbill-provider.ts'
import { portoneV1CredentialsSchema, type PortoneV1Credentials } from './portone-v1/portone-v1-credentials.ts'
import { portoneV2CredentialsSchema, type PortoneV2Credentials } from './portone-v2/portone-v2-credentials.ts'
import { payssamCredentialsSchema, type PayssamCredentials } from './payssam/payssam-credentials.ts'
import { ntsCredentialsSchema, type NtsCredentials } from './nts/nts-credentials.ts'
import { tossCredentialsSchema, type TossCredentials } from './toss/toss-credentials.ts'
import { popbillCredentialsSchema, type PopbillCredentials } from './popbill/popbill-credentials.ts'

/** Each provider's credential schema, for config to compose into a merchant's entry. */
export const CREDENTIAL_SCHEMAS = {
  portone: portoneV1CredentialsSchema,
  'portone-v2': portoneV2CredentialsSchema,
  payssam: payssamCredentialsSchema,
  nts: ntsCredentialsSchema,
  toss: tossCredentialsSchema,
  popbill: popbillCredentialsSchema,
} as const satisfies Record<ProviderName, unknown>

export interface CredentialsByProvider {
  portone: PortoneV1Credentials
  'portone-v2': PortoneV2Credentials
  payssam: PayssamCredentials
  nts: NtsCredentials
  toss: TossCredentials
  popbill: PopbillCredentials
}

export function createProvider<N extends ProviderName>(name: N, deps: ProviderDeps<CredentialsByProvider[N]>): CashReceiptProvider {
  switch (name) {
    case 'portone':
      return createPortoneV1Provider(deps as ProviderDeps<PortoneV1Credentials>)
    case 'portone-v2':
      return createPortoneV2Provider(deps as ProviderDeps<PortoneV2Credentials>)
    case 'payssam':
      return createPayssamProvider(deps as ProviderDeps<PayssamCredentials>)
    case 'nts':
      return createNtsProvider(deps as ProviderDeps<NtsCredentials>)
    case 'toss':
      return createTossProvider(deps as ProviderDeps<TossCredentials>)
    case 'popbill':
      return createPopbillProvider(deps as ProviderDeps<PopbillCredentials>)
    default:
      throw new Error(`unknown provider ${String(name)}`)
  }
}
