import { sql, type Kysely } from 'kysely'

/**
 * The masks became stricter (src/domain/mask.ts): a business number shows its tax-office code only
 * (123-**-*****, was 123-45-***90) and a resident number its birth date only (900101-*******, was
 * 900101-1******). The stored display copies are rewritten from themselves; the encrypted values
 * are untouched. Down is a no-op: the old masks cannot be rebuilt without decrypting.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`UPDATE cash_transactions SET identifier_masked = left(identifier_masked, 3) || '-**-*****'
    WHERE identifier_type = 'business' AND identifier_masked IS NOT NULL AND identifier_masked <> left(identifier_masked, 3) || '-**-*****'`.execute(db)
  await sql`UPDATE cash_transactions SET identifier_masked = left(identifier_masked, 6) || '-*******'
    WHERE identifier_type = 'rrn' AND identifier_masked IS NOT NULL AND identifier_masked <> left(identifier_masked, 6) || '-*******'`.execute(db)
  await sql`UPDATE merchants SET business_number_masked = left(business_number_masked, 3) || '-**-*****'
    WHERE business_number_masked <> left(business_number_masked, 3) || '-**-*****'`.execute(db)
}

export async function down(): Promise<void> {}
