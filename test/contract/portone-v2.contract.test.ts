import { defineProviderContract } from './provider-contract.ts'

defineProviderContract({
  provider: 'portone-v2',
  credentials: { apiSecret: 'v2-secret-contract', channelKey: 'channel-v2-contract', storeId: 'store-contract' },
  badCredentials: { apiSecret: 'not-a-secret', channelKey: 'channel-v2-contract', storeId: 'store-contract' },
  serverErrorOnIssue: 'unknown_outcome', // 502 PG_PROVIDER: read the receipt back
  serverErrorFaults: ['5xx', '5xx'], // the PG failure, then the adapter's read of the ISSUE_FAILED receipt
  deduplicates: true,
  idempotencyReplay: true,
})
