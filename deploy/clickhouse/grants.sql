-- Data Market Monitor: ClickHouse access control (SQL-driven RBAC).
--
-- Applied once by an administrator (or by initdb/10-dmm-users.sh in the compose
-- stack). Every statement is idempotent. Passwords are NOT in this file: the
-- placeholders __DMM_WORKER_PASSWORD_SHA256__ and __DMM_READER_PASSWORD_SHA256__
-- are replaced by the hex SHA-256 of the real passwords when applied, e.g.
--   printf %s "$PW" | sha256sum | cut -d' ' -f1
--
-- dmm_worker: what the worker needs and nothing more. It applies schema.sql on
--   start (CREATE DATABASE IF NOT EXISTS datamarket; CREATE TABLE IF NOT EXISTS
--   datamarket.*), writes events, rejected/duplicate records, the one-minute
--   aggregate and alerts (INSERT), and reads them back for aggregation, dedup
--   recovery and `dmm sql` (SELECT). No ALTER, DROP, TRUNCATE or OPTIMIZE.
-- dmm_reader: dashboards and regulators; SELECT only, in a readonly=1 profile.
-- Roles are granted after the user exists; a new user's default roles are ALL
-- granted roles, so they are active on login.

-- Created here too so the users' DEFAULT DATABASE exists before the worker's
-- first start (the worker's own CREATE DATABASE IF NOT EXISTS is then a no-op).
CREATE DATABASE IF NOT EXISTS datamarket;

CREATE ROLE IF NOT EXISTS dmm_writer;
GRANT CREATE DATABASE ON datamarket.* TO dmm_writer;
GRANT CREATE TABLE ON datamarket.* TO dmm_writer;
GRANT INSERT, SELECT ON datamarket.* TO dmm_writer;
-- The migrations schema.sql carries (for the market stage: an index of the event tables), and nothing else.
GRANT ALTER ADD INDEX ON datamarket.listings TO dmm_writer;
GRANT ALTER ADD INDEX ON datamarket.trades TO dmm_writer;
GRANT ALTER ADD INDEX ON datamarket.usage TO dmm_writer;
GRANT ALTER ADD INDEX ON datamarket.heartbeats TO dmm_writer;
-- ... and for rejections and duplicates: the log they came from, added to their key.
GRANT ALTER ADD COLUMN, ALTER ORDER BY ON datamarket.rejected_events TO dmm_writer;
GRANT ALTER ADD COLUMN, ALTER ORDER BY ON datamarket.duplicate_events TO dmm_writer;
-- ... and for conflicting resends, each event's content digest, and for signed rule changes, the key that signed.
GRANT ALTER ADD COLUMN ON datamarket.listings TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.trades TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.usage TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.heartbeats TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.rule_changes TO dmm_writer;
-- ... and for the console's metering from the rollups, their count of usage events.
GRANT ALTER ADD COLUMN ON datamarket.market_1m TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.market_1h TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.market_1d TO dmm_writer;
GRANT ALTER ADD COLUMN ON datamarket.console_1d TO dmm_writer;

CREATE ROLE IF NOT EXISTS dmm_read;
GRANT SELECT ON datamarket.* TO dmm_read;

-- The worker needs to set per-query settings (insert_deduplication_token), so its
-- profile is not readonly; it only bounds resources.
CREATE SETTINGS PROFILE IF NOT EXISTS dmm_worker_profile SETTINGS
    max_memory_usage = 4000000000,
    max_execution_time = 300;

-- readonly = 1: reads only, no settings changes, except max_execution_time which
-- Grafana's ClickHouse client sets on every query (changeable_in_readonly).
CREATE SETTINGS PROFILE IF NOT EXISTS dmm_readonly SETTINGS
    readonly = 1,
    max_execution_time = 60 MIN 1 MAX 600 CHANGEABLE_IN_READONLY,
    max_memory_usage = 2000000000,
    max_result_rows = 1000000;

CREATE USER IF NOT EXISTS dmm_worker
    IDENTIFIED WITH sha256_hash BY '__DMM_WORKER_PASSWORD_SHA256__'
    DEFAULT DATABASE datamarket
    SETTINGS PROFILE 'dmm_worker_profile';
GRANT dmm_writer TO dmm_worker;

CREATE USER IF NOT EXISTS dmm_reader
    IDENTIFIED WITH sha256_hash BY '__DMM_READER_PASSWORD_SHA256__'
    DEFAULT DATABASE datamarket
    SETTINGS PROFILE 'dmm_readonly';
GRANT dmm_read TO dmm_reader;
