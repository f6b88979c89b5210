-- The finance read models on PostgreSQL, in the log's own schema ({schema} stands for it).
--
-- `reconciler project` creates these and keeps them up to date from the log, exactly once:
-- each page of log records is written together with the projection's position
-- (`projection:finance` in the log's input_positions) in one transaction. Every row
-- follows from the log alone: `reconciler project --rebuild` drops them and projects the
-- whole log again. Times are the engine's clock (ClockTicked), never the wall clock.
-- See README.md beside this file for what each figure means.

-- One row per shard (a JSONL file, or a Kafka partition `topic:partition`): its engine
-- clock, its last record projected, and where all the money it knows stands now
-- (orphan debits included, so these add up to `reconcile`'s totals).
CREATE TABLE IF NOT EXISTS {schema}.rm_sources (
    source text PRIMARY KEY,
    clock timestamptz,
    position bigint NOT NULL,
    debited bigint NOT NULL,
    kept bigint NOT NULL,
    refunded bigint NOT NULL,
    refund_pending bigint NOT NULL,
    at_risk bigint NOT NULL
);

-- One row per order, as `reconcile` reports it, with when things happened to it.
CREATE TABLE IF NOT EXISTS {schema}.rm_orders (
    source text NOT NULL,
    order_id text NOT NULL,
    status text NOT NULL,
    placed smallint NOT NULL,
    quantity integer NOT NULL,
    delivered integer NOT NULL,
    debited bigint NOT NULL,
    kept bigint NOT NULL,
    refunded bigint NOT NULL,
    refund_pending bigint NOT NULL,
    at_risk bigint NOT NULL,
    cases text NOT NULL,
    expires_at timestamptz,
    placed_at timestamptz,
    paid_at timestamptz,
    first_debit_at timestamptz,
    remedied_at timestamptz,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (source, order_id)
);
CREATE INDEX IF NOT EXISTS rm_orders_by_id ON {schema}.rm_orders (order_id, source);
CREATE INDEX IF NOT EXISTS rm_orders_by_status ON {schema}.rm_orders (status, order_id, source);

-- Every escalation (a case a person must close), open until it is resolved.
CREATE TABLE IF NOT EXISTS {schema}.rm_cases (
    source text NOT NULL,
    escalation_id text NOT NULL,
    reason text NOT NULL,
    order_id text,
    subject text NOT NULL,
    amount bigint NOT NULL,
    opened_at timestamptz NOT NULL,
    resolved_at timestamptz,
    outcome text,
    operator text,
    note text,
    PRIMARY KEY (source, escalation_id)
);
CREATE INDEX IF NOT EXISTS rm_cases_by_age ON {schema}.rm_cases (opened_at, source, escalation_id);

-- A shard's money as it stood at the end of each engine-clock hour (UTC hour start);
-- the current hour's row is kept up to date.
CREATE TABLE IF NOT EXISTS {schema}.rm_money_hourly (
    source text NOT NULL,
    hour timestamptz NOT NULL,
    debited bigint NOT NULL,
    kept bigint NOT NULL,
    refunded bigint NOT NULL,
    refund_pending bigint NOT NULL,
    at_risk bigint NOT NULL,
    PRIMARY KEY (source, hour)
);

-- How many commands and results of each kind, outcome and reason; stamps and rupiah.
CREATE TABLE IF NOT EXISTS {schema}.rm_outcomes (
    source text NOT NULL,
    kind text NOT NULL,
    outcome text NOT NULL,
    reason text NOT NULL,
    retryable smallint NOT NULL,
    count bigint NOT NULL,
    stamps bigint NOT NULL,
    amount bigint NOT NULL,
    PRIMARY KEY (source, kind, outcome, reason, retryable)
);

-- Per order, how long from its first debit until it was first remedied (all stamps
-- delivered, or the money back, or some delivered and the rest back).
CREATE TABLE IF NOT EXISTS {schema}.rm_remedy_times (
    source text NOT NULL,
    order_id text NOT NULL,
    remedy text NOT NULL,
    first_debit_at timestamptz NOT NULL,
    remedied_at timestamptz NOT NULL,
    seconds double precision NOT NULL,
    PRIMARY KEY (source, order_id)
);

-- Which log positions concern an order: its story without a scan of the log.
CREATE TABLE IF NOT EXISTS {schema}.rm_order_records (
    order_id text NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (order_id, position)
);

-- Open escalations with their age on their own shard's engine clock.
CREATE OR REPLACE VIEW {schema}.rm_open_cases AS
SELECT
    c.source,
    c.escalation_id,
    c.reason,
    c.order_id,
    c.subject,
    c.amount,
    c.opened_at,
    s.clock,
    extract(EPOCH FROM s.clock - c.opened_at)::double precision AS age_seconds,
    CASE
        WHEN s.clock - c.opened_at < interval '1 hour' THEN '<1h'
        WHEN s.clock - c.opened_at < interval '6 hours' THEN '1-6h'
        WHEN s.clock - c.opened_at < interval '24 hours' THEN '6-24h'
        ELSE '>24h'
    END AS age_bucket
FROM {schema}.rm_cases AS c
JOIN {schema}.rm_sources AS s ON s.source = c.source
WHERE c.resolved_at IS NULL;
