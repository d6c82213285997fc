import { sql, type Kysely } from 'kysely'

/**
 * Buyer notifications (docs/notifications.md): the outbox `notifications`, one row per (receipt event,
 * channel), and merchants.notify_channels, the channels a merchant has switched on (synced from the
 * merchants file on every start).
 *
 * The row is created by a trigger on receipts, in the very transaction that moves a receipt into
 * `issued`: an issue row reaching issued is the event `issued`, a cancel row reaching issued (the
 * provider accepted the cancellation) is the event `cancelled`. Every path that moves a receipt there
 * (the worker's batched transitions, the cancel outcome, reconcile's repair) goes through this one
 * UPDATE of `state`, so no event can be committed without its outbox rows, whatever process dies
 * afterwards. A full cancel's revert (cancelling → issued) is not an event. UNIQUE (receipt_id,
 * channel) makes the row once per event and channel, however often the row is moved.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE merchants ADD COLUMN IF NOT EXISTS notify_channels text[] NOT NULL DEFAULT '{}'`.execute(db)
  await sql`CREATE TABLE IF NOT EXISTS notifications (
    id bigserial PRIMARY KEY,
    receipt_id bigint NOT NULL REFERENCES receipts (id),
    event text NOT NULL CHECK (event IN ('issued', 'cancelled')),
    channel text NOT NULL CHECK (channel IN ('email', 'sms', 'kakao')),
    merchant_id text NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts int NOT NULL DEFAULT 0,
    locked_by text,
    locked_until timestamptz,
    send_started_at timestamptz,
    sends int NOT NULL DEFAULT 0,
    sent_at timestamptz,
    message_id text,
    skip_reason text,
    error_class text,
    error_code text,
    enqueued_at timestamptz,
    redrive_count int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (receipt_id, channel)
  )`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS notifications_open ON notifications (id) WHERE state IN ('pending', 'sending')`.execute(db)
  await sql`CREATE INDEX IF NOT EXISTS notifications_failed ON notifications (merchant_id, channel) WHERE state = 'failed'`.execute(db)
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

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TRIGGER IF EXISTS receipts_notify ON receipts`.execute(db)
  await sql`DROP FUNCTION IF EXISTS notifications_on_receipt_event()`.execute(db)
  await sql`DROP TABLE IF EXISTS notifications`.execute(db)
  await sql`ALTER TABLE merchants DROP COLUMN IF EXISTS notify_channels`.execute(db)
}
