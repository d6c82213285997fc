import { sql, type Kysely } from 'kysely'

/**
 * Buyer notifications announce only receipts the tax authority holds (docs/notifications.md,
 * "Provisional receipts"). A receipt recorded issued + provisional (Toss, Popbill: the tax
 * authority's result comes a day or two later) creates no outbox row; its `issued` event is the
 * moment it is issued AND final — recorded issued already final, or reconcile's finalizeProvisional
 * clearing `provisional` on an issued row. A receipt the tax authority refuses (failProvisional:
 * issued → failed) so never told the buyer anything, and its re-drive, once final, is its one
 * `issued` event, with the approval number that counts.
 *
 * A cancellation of an issue row that is still provisional and was never announced (no outbox row)
 * is no event either: the buyer never heard of that receipt. A provisional row announced before this
 * migration (it has outbox rows) keeps its cancel notice.
 *
 * The trigger now also fires on `provisional`; the statements that move receipts are unchanged.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION notifications_on_receipt_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.kind = 'cancel' AND EXISTS (
        SELECT 1 FROM receipts p
        WHERE p.id = NEW.parent_receipt_id AND p.provisional
          AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.receipt_id = p.id)
      ) THEN
        RETURN NULL;
      END IF;
      INSERT INTO notifications (receipt_id, event, channel, merchant_id)
      SELECT NEW.id, CASE WHEN NEW.kind = 'issue' THEN 'issued' ELSE 'cancelled' END, c, NEW.merchant_id
      FROM merchants m CROSS JOIN LATERAL unnest(m.notify_channels) AS c
      WHERE m.id = NEW.merchant_id
      ON CONFLICT (receipt_id, channel) DO NOTHING;
      RETURN NULL;
    END $$`.execute(db)
  await sql`DROP TRIGGER IF EXISTS receipts_notify ON receipts`.execute(db)
  await sql`
    CREATE TRIGGER receipts_notify AFTER UPDATE OF state, provisional ON receipts FOR EACH ROW
    WHEN (NEW.state = 'issued' AND NOT NEW.provisional
          AND (OLD.state NOT IN ('issued', 'cancelling', 'cancelled') OR OLD.provisional))
    EXECUTE FUNCTION notifications_on_receipt_event()`.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION notifications_on_receipt_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO notifications (receipt_id, event, channel, merchant_id)
      SELECT NEW.id, CASE WHEN NEW.kind = 'issue' THEN 'issued' ELSE 'cancelled' END, c, NEW.merchant_id
      FROM merchants m CROSS JOIN LATERAL unnest(m.notify_channels) AS c
      WHERE m.id = NEW.merchant_id
      ON CONFLICT (receipt_id, channel) DO NOTHING;
      RETURN NULL;
    END $$`.execute(db)
  await sql`DROP TRIGGER IF EXISTS receipts_notify ON receipts`.execute(db)
  await sql`
    CREATE TRIGGER receipts_notify AFTER UPDATE OF state ON receipts FOR EACH ROW
    WHEN (NEW.state = 'issued' AND OLD.state NOT IN ('issued', 'cancelling', 'cancelled'))
    EXECUTE FUNCTION notifications_on_receipt_event()`.execute(db)
}
