import { defineProviderContract } from './provider-contract.ts'

// External receipts (/receipts/external/{merchant_uid}); the imp_uid path is covered by the pipeline tests.
defineProviderContract({
  provider: 'portone',
  credentials: { impKey: 'imp_key_contract', impSecret: 'imp_secret_contract', channelKey: 'channel-contract' },
  badCredentials: { impKey: 'imp_key_contract', impSecret: 'imp_secret_wrong', channelKey: 'channel-contract' },
  tokenLifetimeMs: 30 * 60_000,
  serverErrorOnIssue: 'retryable', // V1 documents 500 as "the PG failed to issue"
  deduplicates: true,
})
