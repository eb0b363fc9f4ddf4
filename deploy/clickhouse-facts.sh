#!/bin/sh
# Backs up or restores the ClickHouse fact tables (status_intervals, order_cycles) of the
# compose deployment, with ALTER TABLE … FREEZE and ATTACH PART: both work on ClickHouse 18.16
# and on current releases, need no backup disk configured, and do not stop the server.
# docs/deploy.md says when to use it (the facts can also be rebuilt from PostgreSQL).
#
#   deploy/clickhouse-facts.sh backup  DIR   # writes DIR/clickhouse-<table>.tar
#   deploy/clickhouse-facts.sh restore DIR   # attaches the parts of those files
#
# Run it from the folder of docker-compose.yml. FREEZE makes hard links of a table's parts in
# the server's shadow/ folder; they are packed to standard output and removed, one table at a
# time. A restore unpacks each file on the server, moves every part into the table's detached/
# folder and attaches it. Attaching into a table that already has rows is safe: rows are
# versioned (ReplacingMergeTree), so an older copy of a row never wins over a newer one.
# The tables must exist: query-api or a processor creates them at start.
#
# Elsewhere than compose: KSA_CH_EXEC is the command that runs `sh` where the server's files
# are (default `docker compose exec -T clickhouse`; for a local server e.g. `sudo env`),
# CLICKHOUSE_USER / CLICKHOUSE_PASSWORD / CLICKHOUSE_PORT / CLICKHOUSE_ROOT (default
# /var/lib/clickhouse) are read there, KSA_CH_DATABASE is the database (default ksa).
set -eu
umask 077

usage() {
    echo "usage: $0 backup|restore DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$2
db=${KSA_CH_DATABASE:-ksa}
exec_ch=${KSA_CH_EXEC:-docker compose exec -T clickhouse}
tables="status_intervals order_cycles"

# Runs on the server's side: the client with the server's own user, password and port.
common=$(cat <<'EOF'
set -eu
db=$1
table=$2
root=${CLICKHOUSE_ROOT:-/var/lib/clickhouse}
client() {
    clickhouse-client --user "${CLICKHOUSE_USER:-default}" \
        ${CLICKHOUSE_PASSWORD:+--password "$CLICKHOUSE_PASSWORD"} \
        ${CLICKHOUSE_PORT:+--port "$CLICKHOUSE_PORT"} --query "$1" </dev/null
}
EOF
)

backup=$(cat <<'EOF'
if [ -n "$(ls -A "$root/shadow" 2>/dev/null)" ]; then
    echo "$root/shadow is not empty (an earlier FREEZE?): move its contents away first" >&2
    exit 1
fi
client "ALTER TABLE $db.$table FREEZE" >/dev/null
tar -C "$root/shadow" -cf - .
rm -rf "$root"/shadow/*
EOF
)

restore=$(cat <<'EOF'
detached=$root/data/$db/$table/detached
if [ ! -d "$detached" ]; then
    echo "$detached is missing: create the tables first (start query-api once)" >&2
    exit 1
fi
work=$root/restore-$table
rm -rf "$work"
mkdir -p "$work"
tar -C "$work" -xf -
owner=$(stat -c %u:%g "$detached")
attached=0
for sums in $(find "$work" -name checksums.txt); do
    part=$(dirname "$sums")
    name=$(basename "$part")
    mv "$part" "$detached/$name"
    chown -R "$owner" "$detached/$name"
    client "ALTER TABLE $db.$table ATTACH PART '$name'"
    attached=$((attached + 1))
done
rm -rf "$work"
echo "$db.$table: $attached part(s) attached" >&2
EOF
)

case $action in
backup)
    mkdir -p "$dir"
    for table in $tables; do
        file=$dir/clickhouse-$table.tar
        # shellcheck disable=SC2086 # KSA_CH_EXEC is a command with its arguments
        $exec_ch sh -c "$common
$backup" sh "$db" "$table" >"$file.partial"
        mv "$file.partial" "$file"
        echo "$db.$table -> $file" >&2
    done
    ;;
restore)
    for table in $tables; do
        file=$dir/clickhouse-$table.tar
        [ -f "$file" ] || { echo "$file is missing" >&2; exit 1; }
        # shellcheck disable=SC2086
        $exec_ch sh -c "$common
$restore" sh "$db" "$table" <"$file"
    done
    ;;
*)
    usage
    ;;
esac
