-- Data Market Monitor: the ClickHouse schema (database `datamarket`).
-- Applied automatically by the worker on start (every statement is idempotent).
--
-- Idempotency: every event table is a ReplacingMergeTree ordered by the event's hour and
-- identity (exchange_id, event_id), and every insert carries a deterministic
-- insert_deduplication_token (non_replicated_deduplication_window), so a retried or
-- replayed write never adds a second copy. The worker also remembers the source
-- (partition, offset) of every stored event, so a redelivery after a crash is
-- recognised and not counted as a duplicate. Queries that must be exact use FINAL.
--
-- The hour leads the sort key so that the per-second recompute of a minute window, the
-- restore queries and "today"/"this hour" questions read that stretch of time only, not the
-- whole month partition (a store created before keeps its key: see the closing notes).

CREATE DATABASE IF NOT EXISTS datamarket;

CREATE TABLE IF NOT EXISTS datamarket.listings
(
    exchange_id    LowCardinality(String),
    event_id       String,
    occurred_at    DateTime64(6, 'UTC'),
    action         LowCardinality(String),
    product_id     String,
    seller_id      Nullable(String),
    title          Nullable(String),
    category       LowCardinality(Nullable(String)),
    source         LowCardinality(Nullable(String)),
    sector         LowCardinality(Nullable(String)),
    pricing        LowCardinality(Nullable(String)),
    list_price     Nullable(Decimal(38, 2)),
    unit           LowCardinality(Nullable(String)),
    high_quality   UInt8,
    size_bytes     Nullable(UInt64),
    recognized_by  Array(LowCardinality(String)),
    late           UInt8 COMMENT 'older than the watermark minus the allowed lateness when it arrived',
    src_partition  Int32,
    src_offset     Int64,
    ingested_at    DateTime64(3, 'UTC'),
    content_digest UInt64 COMMENT 'what the event said once parsed (models.content_digest): a resend saying else is a conflicting_duplicate (0: stored before it was kept)',
    INDEX ingested ingested_at TYPE minmax GRANULARITY 1  -- the market stage reads what was stored lately
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toStartOfHour(occurred_at), exchange_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS datamarket.trades
(
    exchange_id    LowCardinality(String),
    event_id       String,
    occurred_at    DateTime64(6, 'UTC'),
    trade_id       String,
    product_id     String,
    buyer_id       String,
    seller_id      String,
    price          Decimal(38, 2),
    quantity       UInt64,
    amount         Decimal(38, 2),
    currency       LowCardinality(String),
    venue          LowCardinality(String),
    purpose        LowCardinality(String),
    data_bytes     Nullable(UInt64),
    sector         LowCardinality(String) COMMENT 'from the product listing known when the trade arrived, else unknown',
    category       LowCardinality(String),
    source         LowCardinality(String),
    high_quality   UInt8,
    late           UInt8,
    src_partition  Int32,
    src_offset     Int64,
    ingested_at    DateTime64(3, 'UTC'),
    content_digest UInt64 COMMENT 'what the event said once parsed (models.content_digest): a resend saying else is a conflicting_duplicate (0: stored before it was kept)',
    INDEX ingested ingested_at TYPE minmax GRANULARITY 1,  -- the market stage reads what was stored lately
    INDEX late_rows late TYPE minmax GRANULARITY 1  -- the console reads the late trades the rollups leave out
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toStartOfHour(occurred_at), exchange_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS datamarket.usage
(
    exchange_id    LowCardinality(String),
    event_id       String,
    occurred_at    DateTime64(6, 'UTC'),
    product_id     String,
    buyer_id       String,
    calls          UInt64,
    bytes          UInt64,
    sector         LowCardinality(String),
    category       LowCardinality(String),
    source         LowCardinality(String),
    high_quality   UInt8,
    late           UInt8,
    src_partition  Int32,
    src_offset     Int64,
    ingested_at    DateTime64(3, 'UTC'),
    content_digest UInt64 COMMENT 'what the event said once parsed (models.content_digest): a resend saying else is a conflicting_duplicate (0: stored before it was kept)',
    INDEX ingested ingested_at TYPE minmax GRANULARITY 1,  -- the market stage reads what was stored lately
    INDEX late_rows late TYPE minmax GRANULARITY 1  -- the console reads the late usage public_1d leaves out
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toStartOfHour(occurred_at), exchange_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS datamarket.heartbeats
(
    exchange_id    LowCardinality(String),
    event_id       String,
    occurred_at    DateTime64(6, 'UTC'),
    seq            UInt64,
    late           UInt8,
    src_partition  Int32,
    src_offset     Int64,
    ingested_at    DateTime64(3, 'UTC'),
    content_digest UInt64 COMMENT 'what the event said once parsed (models.content_digest): a resend saying else is a conflicting_duplicate (0: stored before it was kept)',
    INDEX ingested ingested_at TYPE minmax GRANULARITY 1  -- the market stage reads what was stored lately
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (toStartOfHour(occurred_at), exchange_id, event_id)
TTL toDateTime(ingested_at) + INTERVAL 90 DAY  -- stored time: a TTL on occurred_at would drop an old heartbeat on insert
SETTINGS non_replicated_deduplication_window = 1000;

-- Every message that failed the contract, with its exact bytes.
CREATE TABLE IF NOT EXISTS datamarket.rejected_events
(
    src_topic      LowCardinality(String),
    topic_id       String COMMENT 'the log (see processed_batches): offsets start again in a new one',
    src_partition  Int32,
    src_offset     Int64,
    message_key    Nullable(String),
    raw            String,
    reason         LowCardinality(String),
    detail         String,
    exchange_id    String COMMENT 'as sent, if it could be read',
    event_id       String COMMENT 'as sent, if it could be read',
    received_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (src_topic, src_partition, src_offset, topic_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Every message counted as a duplicate of an event stored earlier.
CREATE TABLE IF NOT EXISTS datamarket.duplicate_events
(
    src_topic        LowCardinality(String),
    topic_id         String COMMENT 'the log (see processed_batches): offsets start again in a new one',
    src_partition    Int32,
    src_offset       Int64,
    exchange_id      LowCardinality(String),
    event_id         String,
    type             LowCardinality(String),
    first_partition  Int32,
    first_offset     Int64,
    received_at      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (src_topic, src_partition, src_offset, topic_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One-minute event-time market aggregate. Rows are recomputed by the worker from the
-- event tables for every window an event touched, so they always sum to them (events
-- later than the allowed lateness are stored but leave their closed window alone).
-- venue is '' for usage and listing counts, which have none.
CREATE TABLE IF NOT EXISTS datamarket.market_1m
(
    window_start   DateTime('UTC'),
    exchange_id    LowCardinality(String),
    sector         LowCardinality(String),
    category       LowCardinality(String),
    source         LowCardinality(String),
    venue          LowCardinality(String),
    high_quality   UInt8,
    trades         UInt64,
    traded_amount  Decimal(38, 2),
    quantity       UInt64,
    data_bytes     UInt64,
    buyers         UInt64 COMMENT 'distinct buyers in the window and cell',
    sellers        UInt64,
    usage_calls    UInt64,
    usage_bytes    UInt64,
    usage_records  UInt64 COMMENT 'usage events',
    new_listings   UInt64,
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, exchange_id, sector, category, source, venue, high_quality);

-- Rollups of market_1m for questions over months and years (dmm bench --query-rows): the same
-- cells and additive measures (distinct buyers/sellers do not add up, so they stay per minute).
-- Recomputed from market_1m whenever one of their minutes is, so they are exact and idempotent.
CREATE TABLE IF NOT EXISTS datamarket.market_1h
(
    window_start   DateTime('UTC'),
    exchange_id    LowCardinality(String),
    sector         LowCardinality(String),
    category       LowCardinality(String),
    source         LowCardinality(String),
    venue          LowCardinality(String),
    high_quality   UInt8,
    trades         UInt64,
    traded_amount  Decimal(38, 2),
    quantity       UInt64,
    data_bytes     UInt64,
    usage_calls    UInt64,
    usage_bytes    UInt64,
    usage_records  UInt64 COMMENT 'usage events',
    new_listings   UInt64,
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (window_start, exchange_id, sector, category, source, venue, high_quality);

-- `day` is the China Standard Time calendar day, as regulators count "today".
CREATE TABLE IF NOT EXISTS datamarket.market_1d
(
    day            Date,
    exchange_id    LowCardinality(String),
    sector         LowCardinality(String),
    category       LowCardinality(String),
    source         LowCardinality(String),
    venue          LowCardinality(String),
    high_quality   UInt8,
    trades         UInt64,
    traded_amount  Decimal(38, 2),
    quantity       UInt64,
    data_bytes     UInt64,
    usage_calls    UInt64,
    usage_bytes    UInt64,
    usage_records  UInt64 COMMENT 'usage events',
    new_listings   UInt64,
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYear(day)
ORDER BY (day, exchange_id, sector, category, source, venue, high_quality);

-- The Market view's figures (streams/console/market.py) per China day, exchange and sector: market_1d's cells
-- added up over the dimensions the console does not show, so a year of days reads a few hundred thousand rows at
-- most however many trades. Recomputed whole from market_1d for every day a window flush writes, after it (the
-- last rollup written), so it is exact and idempotent like the others. A store created before is filled on start.
CREATE TABLE IF NOT EXISTS datamarket.console_1d
(
    day                  Date,
    exchange_id          LowCardinality(String),
    sector               LowCardinality(String),
    trades               UInt64,
    traded_amount        Decimal(38, 2),
    on_exchange_amount   Decimal(38, 2) COMMENT 'of trades with venue on_exchange',
    high_quality_amount  Decimal(38, 2) COMMENT 'of trades of high-quality products',
    usage_records        UInt64 COMMENT 'usage events (metering)',
    usage_calls          UInt64,
    usage_bytes          UInt64,
    updated_at           DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYear(day)
ORDER BY (day, exchange_id, sector);

-- Public data delivered (the Market view's public supply) per China day and product: the on-time trades and usage
-- of `source = 'public'`, kept per product so that the console groups them by the pricing of each product's latest
-- listing when it reads them (a rollup per pricing would fix the pricing of the day). Each day is rebuilt whole from
-- trades and usage (totals, never deltas), with its mark (product_id '', zeros): once its on-time events can no
-- longer arrive (the watermark past its end by the allowed lateness), and again whenever a flush counts more of
-- them, never while it fills, so a flush does not re-read a growing day. A day whose mark is older than its
-- console_1d rows is read raw by the console. A store created before is filled on start.
CREATE TABLE IF NOT EXISTS datamarket.public_1d
(
    day            Date,
    product_id     String COMMENT 'empty: the mark of a rebuilt day (zeros)',
    trades         UInt64,
    amount         Decimal(38, 2) COMMENT 'traded amount',
    calls          UInt64 COMMENT 'usage calls',
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYear(day)
ORDER BY (day, product_id);

-- public_1d added up per China month (`month`: its first day) and product, so that a period of months reads a row
-- per month and product instead of one per day. Rebuilt whole from public_1d, with its mark (product_id '', zeros),
-- right after a flush rebuilds any of its days (and on start for every month older than its newest day). The
-- console reads a month from it only if every day of the month is held by public_1d and the month's mark is no older
-- than the newest mark of its days, else it reads the days. A store created before is filled on start.
CREATE TABLE IF NOT EXISTS datamarket.public_1mo
(
    month          Date COMMENT 'the first day of the China month',
    product_id     String COMMENT 'empty: the mark of a rebuilt month (zeros)',
    trades         UInt64,
    amount         Decimal(38, 2) COMMENT 'traded amount',
    calls          UInt64 COMMENT 'usage calls',
    updated_at     DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYear(month)
ORDER BY (month, product_id);

-- First sightings (sinks/clickhouse/first_seen.py), each the earliest event as (occurred_at, sector): a product's
-- first `list` event anywhere (kind 'product', exchange_id ''), on each exchange (kind 'listing'), a party's first
-- trade as buyer or seller or `list` event as seller (kind 'party', exchange_id '', sector ''). Fed by every window
-- flush with the events stored since `fed_through`, so "new products" and "new participants" of a period read a
-- row per product or party instead of all history (a store created before is filled by the first flush).
CREATE TABLE IF NOT EXISTS datamarket.first_seen
(
    kind           LowCardinality(String),
    id             String,
    exchange_id    LowCardinality(String),
    first          SimpleAggregateFunction(min, Tuple(DateTime64(6, 'UTC'), String)) COMMENT '(occurred_at, sector) of the first event (sector empty for a party)',
    fed_through    SimpleAggregateFunction(max, DateTime64(3, 'UTC')) COMMENT 'the latest ingested_at of the events fed'
)
ENGINE = AggregatingMergeTree
ORDER BY (kind, id, exchange_id);

CREATE TABLE IF NOT EXISTS datamarket.alerts
(
    schema         LowCardinality(String),
    alert_id       String,
    kind           LowCardinality(String),
    severity       LowCardinality(String),
    exchange_id    LowCardinality(String),
    product_id     Nullable(String),
    parties        Array(String),
    event_ids      Array(String),
    score          Float64,
    window_start   Nullable(DateTime64(3, 'UTC')),
    window_end     Nullable(DateTime64(3, 'UTC')),
    detected_at    DateTime64(3, 'UTC'),
    dedup_key      String,
    message        String,
    message_zh     String
)
ENGINE = ReplacingMergeTree
ORDER BY dedup_key
SETTINGS non_replicated_deduplication_window = 1000;

-- The ops lifecycle of an alert: acknowledged / resolved, by whom and when.
CREATE TABLE IF NOT EXISTS datamarket.alert_actions
(
    dedup_key      String,
    action         LowCardinality(String) COMMENT 'ack or resolve',
    actor          String,
    note           String,
    at             DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (dedup_key, at);

-- Progress marker: one row per partition per fully written batch, written last. On
-- restart, offsets at or below a partition's highest marker were completely stored, so
-- their redelivery is recognised and skipped instead of being counted as duplicates.
-- topic_id ties the marks to one log: a recreated topic (or a restarted in-memory
-- broker) starts its offsets again, and old marks must not hide its messages.
CREATE TABLE IF NOT EXISTS datamarket.processed_batches
(
    src_topic      LowCardinality(String),
    topic_id       String,
    src_partition  Int32,
    first_offset   Int64,
    last_offset    Int64,
    messages       UInt32,
    processed_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (src_topic, src_partition, last_offset)
TTL toDateTime(processed_at) + INTERVAL 30 DAY;

-- The market stage's progress (streams/market.py): per partition, the last offset it observed, recorded once
-- the alerts it found up to there are stored. It restores as of these offsets and reads the rest again.
CREATE TABLE IF NOT EXISTS datamarket.market_progress
(
    src_topic      LowCardinality(String),
    topic_id       String,
    src_partition  Int32,
    applied_offset Int64,
    recorded_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (src_topic, topic_id, src_partition, applied_offset)
TTL toDateTime(recorded_at) + INTERVAL 30 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Stores created before the market stage (streams/market.py) gain its indexes in place
-- (parts written before keep no index: the stage's reads scan them until they merge away).
ALTER TABLE datamarket.listings ADD INDEX IF NOT EXISTS ingested ingested_at TYPE minmax GRANULARITY 1;
ALTER TABLE datamarket.trades ADD INDEX IF NOT EXISTS ingested ingested_at TYPE minmax GRANULARITY 1;
ALTER TABLE datamarket.usage ADD INDEX IF NOT EXISTS ingested ingested_at TYPE minmax GRANULARITY 1;
ALTER TABLE datamarket.heartbeats ADD INDEX IF NOT EXISTS ingested ingested_at TYPE minmax GRANULARITY 1;
-- ... and the console's index of late trades (parts written before are read whole until they merge away).
ALTER TABLE datamarket.trades ADD INDEX IF NOT EXISTS late_rows late TYPE minmax GRANULARITY 1;
ALTER TABLE datamarket.usage ADD INDEX IF NOT EXISTS late_rows late TYPE minmax GRANULARITY 1;

-- Stores created before conflicting resends were told from duplicates (contract, Amendment 1) gain the content
-- digest the dedup index restores. Rows stored before keep 0 ("not known": any resend of them is a duplicate).
ALTER TABLE datamarket.listings ADD COLUMN IF NOT EXISTS content_digest UInt64 AFTER ingested_at;
ALTER TABLE datamarket.trades ADD COLUMN IF NOT EXISTS content_digest UInt64 AFTER ingested_at;
ALTER TABLE datamarket.usage ADD COLUMN IF NOT EXISTS content_digest UInt64 AFTER ingested_at;
ALTER TABLE datamarket.heartbeats ADD COLUMN IF NOT EXISTS content_digest UInt64 AFTER ingested_at;

-- Stores created before the rollups counted usage events (the console's metering reads them, not the usage table)
-- gain the columns. Rows written before hold 0 records beside their calls and bytes: the worker's start recomputes
-- those days' minutes from the stored usage (state.StateReader.unmetered_minutes), then their hours and days.
ALTER TABLE datamarket.market_1m ADD COLUMN IF NOT EXISTS usage_records UInt64 AFTER usage_bytes;
ALTER TABLE datamarket.market_1h ADD COLUMN IF NOT EXISTS usage_records UInt64 AFTER usage_bytes;
ALTER TABLE datamarket.market_1d ADD COLUMN IF NOT EXISTS usage_records UInt64 AFTER usage_bytes;
ALTER TABLE datamarket.console_1d ADD COLUMN IF NOT EXISTS usage_records UInt64 AFTER high_quality_amount;
ALTER TABLE datamarket.console_1d ADD COLUMN IF NOT EXISTS usage_calls UInt64 AFTER usage_records;
ALTER TABLE datamarket.console_1d ADD COLUMN IF NOT EXISTS usage_bytes UInt64 AFTER usage_calls;

-- Stores created before rejections and duplicates named their log: a new log's offsets no longer replace an
-- old log's rows at the same offsets (rows written before keep an empty topic_id).
ALTER TABLE datamarket.rejected_events ADD COLUMN IF NOT EXISTS topic_id String AFTER src_topic,
    MODIFY ORDER BY (src_topic, src_partition, src_offset, topic_id);
ALTER TABLE datamarket.duplicate_events ADD COLUMN IF NOT EXISTS topic_id String AFTER src_topic,
    MODIFY ORDER BY (src_topic, src_partition, src_offset, topic_id);

-- Surveillance rules changed at runtime through the dm.rules topic (`dmm rules set`), each signed with the
-- operators' key (contract, Amendment 1). On start the worker replays the accepted signed changes on top of its
-- DMM_RULES__* settings. A refused one (unsigned, badly signed) is kept with its error, never replayed.
CREATE TABLE IF NOT EXISTS datamarket.rule_changes
(
    changed_at     DateTime64(3, 'UTC'),
    actor          String,
    change         String COMMENT 'the dm.rules message as received',
    effective      String COMMENT 'JSON of every rule after the change (empty if refused)',
    accepted       UInt8,
    error          String,
    key_id         LowCardinality(String) COMMENT 'the dm-key of a verified signature (ops), empty when unsigned'
)
ENGINE = MergeTree
ORDER BY changed_at;

-- Stores created before rule changes were signed: changes accepted then carry no key and are not replayed.
ALTER TABLE datamarket.rule_changes ADD COLUMN IF NOT EXISTS key_id LowCardinality(String);
