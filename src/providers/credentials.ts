/** What every provider's credential schema shares: the credential's own rate-limit overrides. */
import { z } from 'zod'
import type { ProviderLimitsOverride } from '../domain/index.ts'

export const limitsOverrideSchema = z
  .object({
    maxConcurrent: z.number().int().positive().nullable(),
    minTimeMs: z.number().int().nonnegative(),
    maxPerSecond: z.number().positive().nullable(),
    dailyQuota: z.number().int().positive().nullable(),
  })
  .partial()
  .strict() satisfies z.ZodType<ProviderLimitsOverride>
