import { defineProviderContract } from './provider-contract.ts'

defineProviderContract({
  provider: 'payssam',
  credentials: { apikey: 'apikeycontract', member: 'member-contract', merchant: 'shop-contract' },
  badCredentials: { apikey: 'wrongkey', member: 'member-contract', merchant: 'shop-contract' },
  serverErrorOnIssue: 'unknown_outcome', // 5000 SYSTEM ERROR is not documented as "not processed"
  deduplicates: true,
})
