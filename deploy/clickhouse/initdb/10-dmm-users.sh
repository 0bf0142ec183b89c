#!/bin/bash
# Run once by the clickhouse/clickhouse-server entrypoint on an empty data
# directory (/docker-entrypoint-initdb.d). Creates the dmm_worker and dmm_reader
# users from /etc/dmm/grants.sql with the passwords from the environment.
set -euo pipefail

: "${CLICKHOUSE_WORKER_PASSWORD:?set CLICKHOUSE_WORKER_PASSWORD (the dmm_worker ClickHouse password)}"
: "${CLICKHOUSE_READER_PASSWORD:?set CLICKHOUSE_READER_PASSWORD (the dmm_reader ClickHouse password)}"

sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

sed -e "s/__DMM_WORKER_PASSWORD_SHA256__/$(sha "$CLICKHOUSE_WORKER_PASSWORD")/" \
    -e "s/__DMM_READER_PASSWORD_SHA256__/$(sha "$CLICKHOUSE_READER_PASSWORD")/" \
    /etc/dmm/grants.sql \
  | clickhouse client --user "${CLICKHOUSE_USER:-default}" --password "${CLICKHOUSE_PASSWORD:-}" --multiquery
echo "dmm users created"
