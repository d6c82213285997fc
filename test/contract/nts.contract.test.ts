import { defineProviderContract } from './provider-contract.ts'

defineProviderContract({
  provider: 'nts',
  credentials: { clientId: 'nts-contract', clientSecret: 'nts-secret-contract' },
  badCredentials: { clientId: 'nts-contract', clientSecret: 'wrong' },
  tokenLifetimeMs: 3600_000,
  serverErrorOnIssue: 'unknown_outcome', // NTS does not deduplicate: only a lookup can tell
  deduplicates: false,
})
