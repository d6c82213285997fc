/** A merchant's PortOne V2 credential, as its merchants-file entry gives it. */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const portoneV2CredentialsSchema = z.object({
  apiSecret: z.string().min(1),
  channelKey: z.string().min(1),
  storeId: z.string().min(1).optional(),
  limits: limitsOverrideSchema.optional(),
})
export type PortoneV2Credentials = z.infer<typeof portoneV2CredentialsSchema>
