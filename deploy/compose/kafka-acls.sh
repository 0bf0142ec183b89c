#!/usr/bin/env bash
# Kafka users (SASL/SCRAM-SHA-512) and ACLs of the monitor's topics: who may write what.
#
#   each exchange (user exchange-<CODE>)   writes dm.events, nothing else, and reads nothing
#   the monitor (user dmm-worker)          the only reader of dm.events; reads dm.rules; writes dm.alerts and
#                                          dm.rejected; its consumer groups and Faust's own topics (prefixed)
#   operators (user dmm-ops)               the only writers of dm.rules
#
# The broker denies whatever no ACL allows (StandardAuthorizer, allow.everyone.if.no.acl.found=false). A user
# writing dm.events still signs each message with its exchange's key (contract, Amendment 1): the ACL keeps
# other principals off the topic, the signature keeps one exchange from writing as another.
#
#   kafka-acls.sh BOOTSTRAP EXCHANGE_USERS_CSV [ADMIN_CLIENT_PROPERTIES]
#
# EXCHANGE_USERS_CSV: header `exchange_id,password`, one row per exchange (codes of exchanges.csv). Passwords
# (here and in WORKER_PASSWORD, OPS_PASSWORD) are letters, digits and `._~-` only, e.g. `openssl rand -hex 24`:
# SCRAM's config syntax has no quoting. Environment: KAFKA_BIN (default /opt/kafka/bin), TOPIC_PREFIX (the
# monitor's DMM_KAFKA__TOPIC_PREFIX, default none), GROUP_ID (DMM_KAFKA__GROUP_ID, default dmm-worker),
# WORKER_PASSWORD and OPS_PASSWORD (required). Idempotent: users are upserted, ACLs added with --force.
# Compose runs it in kafka-init; for another cluster pass an admin client's properties file (deploy/README.md).
set -euo pipefail

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: $0 BOOTSTRAP EXCHANGE_USERS_CSV [ADMIN_CLIENT_PROPERTIES]" >&2
    exit 2
fi
BOOTSTRAP=$1
USERS=$2
ADMIN=()
if [ "$#" -eq 3 ]; then
    ADMIN=(--command-config "$3")
fi
BIN=${KAFKA_BIN:-/opt/kafka/bin}
PREFIX=${TOPIC_PREFIX:-}
GROUP=${GROUP_ID:-dmm-worker}
: "${WORKER_PASSWORD:?set WORKER_PASSWORD: the monitor's SCRAM password (DMM_KAFKA__SASL_PASSWORD)}"
: "${OPS_PASSWORD:?set OPS_PASSWORD: the operators' SCRAM password (dmm rules)}"

scram_user() { # NAME PASSWORD
    if [[ ! $2 =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
        echo "error: the password of Kafka user $1 must be 16 or more of letters, digits and ._~- (openssl rand -hex 24)" >&2
        exit 1
    fi
    "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" "${ADMIN[@]}" --alter --entity-type users \
        --entity-name "$1" --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]" >/dev/null
    echo "user $1"
}

allow() { # PRINCIPAL ARGS...: one ACL binding set
    local principal=$1
    shift
    "$BIN/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" "${ADMIN[@]}" --add --force \
        --allow-principal "User:$principal" "$@" >/dev/null
    echo "allow $principal: $*"
}

# The monitor.
scram_user dmm-worker "$WORKER_PASSWORD"
allow dmm-worker --operation Read --operation Describe --topic "${PREFIX}dm.events" --topic "${PREFIX}dm.rules"
allow dmm-worker --operation Write --operation Describe --topic "${PREFIX}dm.alerts" --topic "${PREFIX}dm.rejected"
allow dmm-worker --operation Read --operation Describe --resource-pattern-type prefixed --group "$GROUP"
allow dmm-worker --operation All --resource-pattern-type prefixed --topic "${GROUP}-control"
allow dmm-worker --operation IdempotentWrite --cluster

# Operators.
scram_user dmm-ops "$OPS_PASSWORD"
allow dmm-ops --operation Write --operation Describe --topic "${PREFIX}dm.rules"
allow dmm-ops --operation IdempotentWrite --cluster

# Exchanges: one user each, dm.events only.
exchanges=0
while IFS=, read -r code password rest || [ -n "$code" ]; do
    code=${code%$'\r'}
    password=${password%$'\r'}
    if [ "$code" = "exchange_id" ] || [ -z "$code$password" ]; then
        continue # the header, a blank line
    fi
    if [[ ! $code =~ ^[A-Z0-9]+$ ]] || [ -n "${rest:-}" ]; then
        echo "error: $USERS: '$code' is not a row exchange_id,password with an exchange code of exchanges.csv" >&2
        exit 1
    fi
    scram_user "exchange-$code" "$password"
    allow "exchange-$code" --operation Write --operation Describe --topic "${PREFIX}dm.events"
    allow "exchange-$code" --operation IdempotentWrite --cluster
    exchanges=$((exchanges + 1))
done <"$USERS"
if [ "$exchanges" -eq 0 ]; then
    echo "error: $USERS names no exchange (header exchange_id,password, a row per exchange)" >&2
    exit 1
fi
echo "kafka users and ACLs: the monitor, operators and $exchanges exchange(s)"
