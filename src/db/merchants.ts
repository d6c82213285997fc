/**
 * The merchants table: configured merchants are upserted on every start, and the business number is
 * stored encrypted (with a masked copy for display), never in plaintext.
 */
import { decryptText, encryptText, type DataKeys } from '../crypto/pii.ts'
import { enabledNotifyChannels, maskIdentifier, type Merchant } from '../domain/index.ts'
import type { Db } from './database.ts'

/** Upserts configured merchants into the merchants table (business number encrypted). */
export async function syncMerchants(db: Db, merchants: readonly Merchant[], keys: DataKeys): Promise<void> {
  for (const m of merchants) {
    const digits = m.businessNumber.replace(/\D/g, '')
    const enc = encryptText(digits, keys, `merchant:${m.id}`)
    await db
      .insertInto('merchants')
      .values({
        id: m.id,
        name: m.name,
        business_number_enc: enc.value,
        business_number_masked: maskIdentifier(digits, 'business'),
        data_key_id: enc.keyId,
        mandatory_issuer: m.mandatoryIssuer,
        providers: Object.keys(m.providers),
        // What the outbox trigger reads (migration 0440): the channels switched on now.
        notify_channels: enabledNotifyChannels(m),
      })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({
          // The configured business number wins (it may have been corrected), under the active key.
          business_number_enc: eb.ref('excluded.business_number_enc'),
          business_number_masked: eb.ref('excluded.business_number_masked'),
          data_key_id: eb.ref('excluded.data_key_id'),
          name: eb.ref('excluded.name'),
          mandatory_issuer: eb.ref('excluded.mandatory_issuer'),
          providers: eb.ref('excluded.providers'),
          notify_channels: eb.ref('excluded.notify_channels'),
          updated_at: new Date(),
        })),
      )
      .execute()
  }
}

/** The merchant's 사업자등록번호, decrypted (throws when the merchant is not in the table). */
export async function merchantBusinessNumber(db: Db, merchantId: string, keys: DataKeys): Promise<string> {
  const row = await db.selectFrom('merchants').select('business_number_enc').where('id', '=', merchantId).executeTakeFirstOrThrow()
  return decryptText(row.business_number_enc, keys, `merchant:${merchantId}`)
}
