-- The finance read models on SQLite (the embedded default), in the log's own database file.
--
-- The same tables as postgresql.sql, with SQLite's types: times are TEXT in UTC, written
-- as 2024-09-04T02:00:00.000000+00:00 (fixed width, so they sort as they compare), and
-- ages are counted to the millisecond. See README.md beside this file.

CREATE TABLE IF NOT EXISTS rm_sources (
    source TEXT PRIMARY KEY,
    clock TEXT,
    position INTEGER NOT NULL,
    debited INTEGER NOT NULL,
    kept INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    refund_pending INTEGER NOT NULL,
    at_risk INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS rm_orders (
    source TEXT NOT NULL,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    placed INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    debited INTEGER NOT NULL,
    kept INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    refund_pending INTEGER NOT NULL,
    at_risk INTEGER NOT NULL,
    cases TEXT NOT NULL,
    expires_at TEXT,
    placed_at TEXT,
    paid_at TEXT,
    first_debit_at TEXT,
    remedied_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, order_id)
);
CREATE INDEX IF NOT EXISTS rm_orders_by_id ON rm_orders (order_id, source);
CREATE INDEX IF NOT EXISTS rm_orders_by_status ON rm_orders (status, order_id, source);

CREATE TABLE IF NOT EXISTS rm_cases (
    source TEXT NOT NULL,
    escalation_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    order_id TEXT,
    subject TEXT NOT NULL,
    amount INTEGER NOT NULL,
    opened_at TEXT NOT NULL,
    resolved_at TEXT,
    outcome TEXT,
    operator TEXT,
    note TEXT,
    PRIMARY KEY (source, escalation_id)
);
CREATE INDEX IF NOT EXISTS rm_cases_by_age ON rm_cases (opened_at, source, escalation_id);

CREATE TABLE IF NOT EXISTS rm_money_hourly (
    source TEXT NOT NULL,
    hour TEXT NOT NULL,
    debited INTEGER NOT NULL,
    kept INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    refund_pending INTEGER NOT NULL,
    at_risk INTEGER NOT NULL,
    PRIMARY KEY (source, hour)
);

CREATE TABLE IF NOT EXISTS rm_outcomes (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    retryable INTEGER NOT NULL,
    count INTEGER NOT NULL,
    stamps INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (source, kind, outcome, reason, retryable)
);

CREATE TABLE IF NOT EXISTS rm_remedy_times (
    source TEXT NOT NULL,
    order_id TEXT NOT NULL,
    remedy TEXT NOT NULL,
    first_debit_at TEXT NOT NULL,
    remedied_at TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (source, order_id)
);

CREATE TABLE IF NOT EXISTS rm_order_records (
    order_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);

-- julianday() keeps milliseconds; rounding to them makes ages exact at that precision.
CREATE VIEW IF NOT EXISTS rm_open_cases AS
SELECT
    source,
    escalation_id,
    reason,
    order_id,
    subject,
    amount,
    opened_at,
    clock,
    age_seconds,
    CASE
        WHEN age_seconds < 3600 THEN '<1h'
        WHEN age_seconds < 21600 THEN '1-6h'
        WHEN age_seconds < 86400 THEN '6-24h'
        ELSE '>24h'
    END AS age_bucket
FROM (
    SELECT
        c.source,
        c.escalation_id,
        c.reason,
        c.order_id,
        c.subject,
        c.amount,
        c.opened_at,
        s.clock,
        round((julianday(s.clock) - julianday(c.opened_at)) * 86400.0, 3) AS age_seconds
    FROM rm_cases AS c
    JOIN rm_sources AS s ON s.source = c.source
    WHERE c.resolved_at IS NULL
);
