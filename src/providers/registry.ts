/** The only place that knows every adapter: provider name → factory. */
import type { ProviderName } from '../config.ts'
import type { CashReceiptProvider, ProviderDeps } from './types.ts'
import { createPortoneV1Provider, type PortoneV1Credentials } from './portone-v1/portone-v1-provider.ts'
import { createPortoneV2Provider, type PortoneV2Credentials } from './portone-v2/portone-v2-provider.ts'
import { createPayssamProvider, type PayssamCredentials } from './payssam/payssam-provider.ts'
import { createNtsProvider, type NtsCredentials } from './nts/nts-provider.ts'

export interface CredentialsByProvider {
  portone: PortoneV1Credentials
  'portone-v2': PortoneV2Credentials
  payssam: PayssamCredentials
  nts: NtsCredentials
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
    default:
      throw new Error(`unknown provider ${String(name)}`)
  }
}
