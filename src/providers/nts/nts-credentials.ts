/** A merchant's NTS credential, as its merchants-file entry gives it. */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const ntsCredentialsSchema = z.object({
  clientId: z.string().min(1),
  clientSecret: z.string().min(1),
  limits: limitsOverrideSchema.optional(),
})
export type NtsCredentials = z.infer<typeof ntsCredentialsSchema>
