/** A merchant's PortOne V1 credential, as its merchants-file entry gives it. */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const portoneV1CredentialsSchema = z.object({
  impKey: z.string().min(1),
  impSecret: z.string().min(1),
  /** channel_key for external receipts (cash taken outside PortOne). */
  channelKey: z.string().min(1).default('channel-key-sandbox'),
  limits: limitsOverrideSchema.optional(),
})
export type PortoneV1Credentials = z.infer<typeof portoneV1CredentialsSchema>
