/** A merchant's Popbill (Linkhub) credential, as its merchants-file entry gives it. */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const popbillCredentialsSchema = z.object({
  /** The partner's Linkhub LinkID (the same in the test and the live environment). */
  linkId: z.string().min(1).max(100),
  /** The Linkhub SecretKey, base64 as Linkhub hands it out: it is decoded to sign the token request. */
  secretKey: z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/, 'secretKey must be the base64 key Linkhub issued'),
  /** The seller's 사업자등록번호 at Popbill (10 digits, dashes allowed): the token is per seller. */
  corpNum: z.string().regex(/^\d{3}-?\d{2}-?\d{5}$/, 'corpNum must be 10 digits'),
  /** The seller's Popbill user id (`x-pb-userid`); optional. */
  userId: z.string().min(1).max(50).optional(),
  /** Issue in bulk (BulkSubmit, up to 100 receipts per call) instead of one RegistIssue per receipt. */
  bulk: z.boolean().default(false),
  limits: limitsOverrideSchema.optional(),
})
export type PopbillCredentials = z.infer<typeof popbillCredentialsSchema>
