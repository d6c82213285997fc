import { sql, type Kysely } from 'kysely'

/**
 * Initial schema. Postgres is the ledger: one receipts row per (transaction, kind, seq) and one
 * issuance_attempts row per provider call. Personal data only as ciphertext plus a masked copy.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE merchants (
      id text PRIMARY KEY,
      name text NOT NULL,
      business_number_enc text NOT NULL,
      business_number_masked text NOT NULL,
      data_key_id text NOT NULL,
      mandatory_issuer boolean NOT NULL DEFAULT false,
      providers text[] NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE cash_transactions (
      transaction_id text PRIMARY KEY,
      merchant_id text NOT NULL REFERENCES merchants(id),
      provider text NOT NULL CHECK (provider IN ('portone','portone-v2','payssam','nts')),
      payment_ref text,
      order_id text,
      order_name text,
      method text NOT NULL CHECK (method IN ('cash','bank_transfer','virtual_account','naverpay')),
      amount bigint NOT NULL CHECK (amount >= 1 AND amount <= 999999999),
      tax_free_amount bigint NOT NULL DEFAULT 0 CHECK (tax_free_amount >= 0),
      service_fee bigint NOT NULL DEFAULT 0 CHECK (service_fee >= 0),
      paid_at timestamptz NOT NULL,
      business_date date NOT NULL,
      identifier_type text CHECK (identifier_type IN ('phone','business','card','rrn','self')),
      identifier_masked text,
      -- identifier and buyer contact data, AES-256-GCM (see src/crypto), key id for rotation
      pii_enc text,
      data_key_id text,
      purpose text NOT NULL DEFAULT 'deduction' CHECK (purpose IN ('deduction','expense')),
      status text NOT NULL DEFAULT 'completed' CHECK (status IN ('completed','cancelled')),
      refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
      content_hash text NOT NULL,
      imported_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      CHECK (refunded_amount <= amount),
      CHECK (tax_free_amount + service_fee <= amount)
    );
    CREATE INDEX cash_transactions_business_date ON cash_transactions (business_date, merchant_id);

    CREATE TABLE settlement_runs (
      id bigserial PRIMARY KEY,
      business_date date NOT NULL,
      merchant_scope text NOT NULL DEFAULT '*',
      trigger text NOT NULL CHECK (trigger IN ('schedule','manual','redrive')),
      status text NOT NULL DEFAULT 'running' CHECK (status IN ('running','enqueued','finished')),
      started_at timestamptz NOT NULL DEFAULT now(),
      enqueued_at timestamptz,
      finished_at timestamptz,
      selected_count integer NOT NULL DEFAULT 0,
      enqueued_count integer NOT NULL DEFAULT 0,
      skipped_count integer NOT NULL DEFAULT 0,
      filter jsonb
    );
    -- one settlement run per business date and scope; schedule and manual triggers share it
    CREATE UNIQUE INDEX settlement_runs_date_scope ON settlement_runs (business_date, merchant_scope)
      WHERE trigger IN ('schedule','manual');

    CREATE TABLE receipts (
      id bigserial PRIMARY KEY,
      transaction_id text NOT NULL REFERENCES cash_transactions(transaction_id),
      kind text NOT NULL CHECK (kind IN ('issue','cancel')),
      seq integer NOT NULL DEFAULT 0,
      merchant_id text NOT NULL REFERENCES merchants(id),
      provider text NOT NULL,
      state text NOT NULL CHECK (state IN ('pending','issuing','issued','failed','skipped','cancelling','cancelled')),
      provider_key text NOT NULL,
      idempotency_key text NOT NULL,
      portone_payment boolean NOT NULL DEFAULT false,
      -- a previous call's outcome is unknown: the next attempt must look the receipt up before issuing
      needs_lookup boolean NOT NULL DEFAULT false,
      approval_number varchar(64),
      total_amount bigint NOT NULL DEFAULT 0,
      supply_amount bigint NOT NULL DEFAULT 0,
      vat_amount bigint NOT NULL DEFAULT 0,
      tax_free_amount bigint NOT NULL DEFAULT 0,
      service_fee bigint NOT NULL DEFAULT 0,
      cancelled_amount bigint NOT NULL DEFAULT 0,
      purpose text NOT NULL,
      self_issued boolean NOT NULL DEFAULT false,
      trade_date date NOT NULL,
      deadline date NOT NULL,
      provider_receipt_id text,
      receipt_url text,
      skip_reason text,
      error_class text,
      error_code text,
      error_message text,
      attempts integer NOT NULL DEFAULT 0,
      locked_by text,
      locked_until timestamptz,
      run_id bigint REFERENCES settlement_runs(id),
      last_run_id bigint REFERENCES settlement_runs(id),
      redrive_count integer NOT NULL DEFAULT 0,
      parent_receipt_id bigint REFERENCES receipts(id),
      cancel_reason smallint CHECK (cancel_reason IN (1,2,3)),
      reconcile_flag text,
      reconciled_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      issued_at timestamptz,
      finished_at timestamptz,
      UNIQUE (transaction_id, kind, seq),
      CHECK (total_amount >= 0 AND supply_amount >= vat_amount)
    );
    CREATE UNIQUE INDEX receipts_provider_key ON receipts (provider, provider_key) WHERE kind = 'issue';
    CREATE INDEX receipts_run_state ON receipts (run_id, state);
    CREATE INDEX receipts_last_run_state ON receipts (last_run_id, state);
    CREATE INDEX receipts_trade_date ON receipts (trade_date, state);
    CREATE INDEX receipts_failed ON receipts (state, provider, error_class) WHERE state = 'failed';

    CREATE TABLE issuance_attempts (
      id bigserial PRIMARY KEY,
      receipt_id bigint NOT NULL REFERENCES receipts(id),
      attempt_no integer NOT NULL,
      operation text NOT NULL CHECK (operation IN ('issue','lookup','cancel','naver_cash_amount')),
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
    CREATE INDEX issuance_attempts_receipt ON issuance_attempts (receipt_id);
    CREATE INDEX issuance_attempts_started ON issuance_attempts (started_at);
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE issuance_attempts, receipts, settlement_runs, cash_transactions, merchants`.execute(db)
}
