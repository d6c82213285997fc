/** A merchant's PortOne V1 credential, as its merchants-file entry gives it. */
import { z } from 'zod'
import { limitsOverrideSchema } from '../credentials.ts'

/**
 * The PG codes (`pg_provider`) PortOne V1 issues cash receipts through (the V1 schema's
 * `x-portone-supported-pgs` of the receipt operations). Each has its own required fields.
 */
export const PORTONE_V1_PGS = ['html5_inicis', 'kcp', 'nice', 'kicc', 'settle', 'daou', 'tosspayments', 'ksnet', 'smartro', 'smartro_v2', 'nice_v2', 'welcome'] as const
export type PortoneV1Pg = (typeof PORTONE_V1_PGS)[number]

export const portoneV1CredentialsSchema = z
  .object({
    impKey: z.string().min(1),
    impSecret: z.string().min(1),
    /** channel_key for external receipts (cash taken outside PortOne). */
    channelKey: z.string().min(1).default('channel-key-sandbox'),
    /** The merchant's PG behind PortOne; decides the PG-specific fields sent (unset: none). */
    pg: z.enum(PORTONE_V1_PGS).optional(),
    /** KSNET (required) and (신) 나이스페이: `product_type`, real goods or digital content (default real). */
    productType: z.enum(['real', 'digital']).optional(),
    /** 키움페이 (daou): the store's name and customer-service number printed on the receipt. */
    companyName: z.string().min(1).optional(),
    companyTel: z.string().min(1).optional(),
    limits: limitsOverrideSchema.optional(),
  })
  .refine((c) => c.pg !== 'daou' || (c.companyName !== undefined && c.companyTel !== undefined), {
    message: 'pg daou needs companyName and companyTel (company_name, company_tel are required by that PG)',
    path: ['pg'],
  })
export type PortoneV1Credentials = z.infer<typeof portoneV1CredentialsSchema>
