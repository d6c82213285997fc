/** A merchant's Toss Payments credential, as its merchants-file entry gives it. */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const tossCredentialsSchema = z.object({
  /** `test_sk_…` (test) or `live_sk_…` (live): the same host serves both, the key decides. */
  secretKey: z.string().min(1),
  limits: limitsOverrideSchema.optional(),
})
export type TossCredentials = z.infer<typeof tossCredentialsSchema>
