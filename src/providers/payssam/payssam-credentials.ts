/** A merchant's PaySsam credential, as its merchants-file entry gives it (lengths are PaySsam's field limits). */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const payssamCredentialsSchema = z.object({
  apikey: z.string().min(1).max(32),
  member: z.string().min(1).max(30),
  merchant: z.string().min(1).max(30),
  limits: limitsOverrideSchema.optional(),
})
export type PayssamCredentials = z.infer<typeof payssamCredentialsSchema>
