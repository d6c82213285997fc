/** A merchant's PaySsam credential, as its merchants-file entry gives it (lengths are PaySsam's field limits). */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

export const payssamCredentialsSchema = z
  .object({
    apikey: z.string().min(1).max(32),
    member: z.string().min(1).max(30),
    merchant: z.string().min(1).max(30),
    /**
     * PaySsam's environment the apikey belongs to. Its bill_id rule differs: production takes any 20
     * alphanumerics, development the partner's 사업자번호 (10 digits) followed by 10 characters.
     * Unset: production.
     */
    environment: z.enum(['production', 'development']).optional(),
    /** The partner's 사업자번호 (10 digits) registered with PaySsam; required in development. */
    businessNumber: z
      .string()
      .regex(/^\d{10}$/, 'businessNumber must be 10 digits')
      .optional(),
    limits: limitsOverrideSchema.optional(),
  })
  .refine((c) => c.environment !== 'development' || c.businessNumber !== undefined, {
    message: 'environment development needs businessNumber (bill_id starts with the 사업자번호 there)',
    path: ['businessNumber'],
  })
export type PayssamCredentials = z.infer<typeof payssamCredentialsSchema>
