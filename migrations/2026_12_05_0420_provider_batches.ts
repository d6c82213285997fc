import { sql, type Kysely } from 'kysely'

/**
 * Bulk issuance (Popbill BulkSubmit): one provider request carries up to 100 receipts of one
 * credential. `provider_batches` is the batch — its deterministic submit id (bound to its content at
 * the first send and never reused: UNIQUE), its own lease (the worker running it), its state — and
 * `provider_batch_items` its members. A receipt is an active member of at most one batch at a time
 * (the partial unique index); an item is deactivated once its receipt's outcome is recorded or the
 * receipt is handed to the single path. `provider_batch_calls` records every bulk HTTP exchange
 * (submit, result poll, many-key lookup) once per batch, not once per member. docs/exactly-once.md,
 * "Bulk issuance", describes the protocol.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS provider_batches (
      id bigserial PRIMARY KEY,
      merchant_id text NOT NULL REFERENCES merchants(id),
      provider text NOT NULL,
      run_id bigint REFERENCES settlement_runs(id),
      trade_date date NOT NULL,
      -- open: nothing sent yet, members may still leave; submitted: a submit may have reached the
      -- provider, the content is frozen; done: every member decided or handed on; abandoned: never sent
      state text NOT NULL DEFAULT 'open' CHECK (state IN ('open','submitted','done','abandoned')),
      submit_id text UNIQUE,
      content_hash text,
      item_count integer NOT NULL,
      locked_by text,
      locked_until timestamptz,
      attempts integer NOT NULL DEFAULT 0,
      requeue_count integer NOT NULL DEFAULT 0,
      polls integer NOT NULL DEFAULT 0,
      submitted_at timestamptz,
      last_sent_at timestamptz,
      error_code text,
      error_message text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz,
      CHECK (state = 'open' OR state = 'abandoned' OR submit_id IS NOT NULL)
    );
    CREATE INDEX IF NOT EXISTS provider_batches_open ON provider_batches (id) WHERE state IN ('open','submitted');

    CREATE TABLE IF NOT EXISTS provider_batch_items (
      batch_id bigint NOT NULL REFERENCES provider_batches(id),
      receipt_id bigint NOT NULL REFERENCES receipts(id),
      active boolean NOT NULL DEFAULT true,
      -- the member's issue attempt row, written 'sent' by the batch's first fenced send
      attempt_id bigint REFERENCES issuance_attempts(id),
      -- what became of it: issued, cancelled, failed, single (handed to the single path), dropped (left before the send)
      outcome text,
      PRIMARY KEY (batch_id, receipt_id)
    );
    CREATE UNIQUE INDEX IF NOT EXISTS provider_batch_items_one_active ON provider_batch_items (receipt_id) WHERE active;

    CREATE TABLE IF NOT EXISTS provider_batch_calls (
      id bigserial PRIMARY KEY,
      batch_id bigint NOT NULL REFERENCES provider_batches(id),
      operation text NOT NULL CHECK (operation IN ('bulk_submit','bulk_result','lookup_many')),
      started_at timestamptz NOT NULL,
      finished_at timestamptz NOT NULL,
      outcome text NOT NULL,
      http_status smallint,
      provider_code text,
      message text,
      latency_ms integer NOT NULL,
      worker_id text NOT NULL,
      job_id text
    );
    CREATE INDEX IF NOT EXISTS provider_batch_calls_batch ON provider_batch_calls (batch_id);
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    DROP TABLE IF EXISTS provider_batch_calls;
    DROP TABLE IF EXISTS provider_batch_items;
    DROP TABLE IF EXISTS provider_batches;
  `.execute(db)
}
