#!/bin/bash
# CityPulse VN storage layout on InfluxDB 2.x: what ingest creates by itself on 1.x (ingest/src/
# storage.ts) and README.md, "Retention and roll-ups on InfluxDB 2.x and 3.x", describes.
#
# Mounted by compose.yaml and compose.cluster.yaml as /docker-entrypoint-initdb.d/citypulse.sh: the
# influxdb image runs it once, at the first start, after its own setup (DOCKER_INFLUXDB_INIT_*),
# against a temporary server, with the influx CLI already logged in as the operator and
# DOCKER_INFLUXDB_INIT_ORG and DOCKER_INFLUXDB_INIT_BUCKET_ID set. If it fails, the image deletes
# what setup made and the next start tries again.
#
#   bucket DOCKER_INFLUXDB_INIT_BUCKET (INFLUX_BUCKET)  raw readings, alerts, dead letters  INFLUX_RAW_RETENTION
#   bucket <it>_rollup_1m                               1-minute roll-ups                   INFLUX_ROLLUP_1M_RETENTION
#   bucket <it>_rollup_1h                               1-hour roll-ups                     INFLUX_ROLLUP_1H_RETENTION
#
# Each bucket is mapped for InfluxQL (DBRP) as CITYPULSE_DATABASE.raw (the default), .rollup_1m and
# .rollup_1h: the api reads history with InfluxQL over /query (infra/src/influx-client.ts). On 2.x
# ingest writes raw data only (INFLUX_API=v2) and leaves the roll-ups alone, so four tasks keep them
# here: per device series, min_/mean_/max_/count_<field> of every field, as ingest writes them on
# 1.x (booleans get min_/max_/count_, strings count_ only), each window stamped with its start;
# a fresh task per resolution and a late one that recomputes the windows late readings land in.
set -euo pipefail

org="${DOCKER_INFLUXDB_INIT_ORG:?}"
raw_bucket="${DOCKER_INFLUXDB_INIT_BUCKET:?}"
raw_bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:?}"
database="${CITYPULSE_DATABASE:-citypulse}"
raw_rp="${CITYPULSE_RAW_RP:-raw}"

# InfluxQL durations (30d, 12h, INF) as the influx CLI takes them (INF: 0, kept forever).
retention() {
  case "$1" in
    INF) echo 0 ;;
    *[0-9]ns | *[0-9]u | *[0-9]µ | *[0-9]ms | *[0-9]s | *[0-9]m | *[0-9]h | *[0-9]d | *[0-9]w) echo "$1" ;;
    *) echo "citypulse: \"$1\" is not an InfluxQL duration such as 30d or INF" >&2; return 1 ;;
  esac
}

say() { echo "citypulse: $*"; }

influx bucket update --id "$raw_bucket_id" --retention "$(retention "${CITYPULSE_RAW_RETENTION:-30d}")" > /dev/null
influx v1 dbrp create --org "$org" --db "$database" --rp "$raw_rp" --bucket-id "$raw_bucket_id" --default > /dev/null
say "bucket $raw_bucket mapped as $database.$raw_rp (default)"

for resolution in 1m 1h; do
  case "$resolution" in
    1m) keep="${CITYPULSE_ROLLUP_1M_RETENTION:-90d}" ;;
    1h) keep="${CITYPULSE_ROLLUP_1H_RETENTION:-730d}" ;;
  esac
  bucket="${raw_bucket}_rollup_${resolution}"
  influx bucket create --org "$org" --name "$bucket" --retention "$(retention "$keep")" > /dev/null
  bucket_id="$(influx bucket list --org "$org" --name "$bucket" --hide-headers | cut -f 1)"
  influx v1 dbrp create --org "$org" --db "$database" --rp "rollup_${resolution}" --bucket-id "$bucket_id" > /dev/null
  say "bucket $bucket (kept $keep) mapped as $database.rollup_${resolution}"
done

# rollup_task NAME EVERY OFFSET RANGE WINDOW TARGET: the Flux of one roll-up task. A task's now()
# is its scheduled time, so with RANGE a multiple of EVERY the range starts and ends on window
# boundaries; OFFSET lets ingest's last batch of the window arrive first.
rollup_task() {
  local name="$1" every="$2" offset="$3" range="$4" window="$5" target="$6"
  cat <<FLUX
import "types"

option task = {name: "${name}", every: ${every}, offset: ${offset}}

raw = from(bucket: "${raw_bucket}")
    |> range(start: -${range})
    |> filter(fn: (r) => r._measurement == "traffic" or r._measurement == "environment" or r._measurement == "energy")

rollup = (tables=<-, fn, prefix) => tables
    |> aggregateWindow(every: ${window}, fn: fn, createEmpty: false, timeSrc: "_start")
    |> map(fn: (r) => ({r with _field: prefix + r._field}))

numbers = raw |> filter(fn: (r) => types.isType(v: r._value, type: "float"))
flags = raw |> filter(fn: (r) => types.isType(v: r._value, type: "bool")) |> toInt()

numbers |> rollup(fn: min, prefix: "min_") |> to(bucket: "${target}") |> yield(name: "min")
numbers |> rollup(fn: mean, prefix: "mean_") |> to(bucket: "${target}") |> yield(name: "mean")
numbers |> rollup(fn: max, prefix: "max_") |> to(bucket: "${target}") |> yield(name: "max")
flags |> rollup(fn: min, prefix: "min_") |> toBool() |> to(bucket: "${target}") |> yield(name: "min_bool")
flags |> rollup(fn: max, prefix: "max_") |> toBool() |> to(bucket: "${target}") |> yield(name: "max_bool")
raw |> rollup(fn: count, prefix: "count_") |> to(bucket: "${target}") |> yield(name: "count")
FLUX
}

# The schedules of ingest's roll-ups on 1.x (ROLLUPS in ingest/src/storage.ts): fresh windows
# every 1m over 2m and every 1h over 2h; late readings every 15m over 75m and every 6h over 30h.
flux="$(mktemp)"
while read -r name every offset range window target; do
  rollup_task "$name" "$every" "$offset" "$range" "$window" "$target" > "$flux"
  influx task create --org "$org" --file "$flux" > /dev/null
  say "task $name: every $every, windows of $window over the last $range into $target"
done <<TASKS
citypulse-rollup-1m       1m  15s 2m  1m ${raw_bucket}_rollup_1m
citypulse-rollup-1m-late  15m 1m  75m 1m ${raw_bucket}_rollup_1m
citypulse-rollup-1h       1h  1m  2h  1h ${raw_bucket}_rollup_1h
citypulse-rollup-1h-late  6h  5m  30h 1h ${raw_bucket}_rollup_1h
TASKS
rm -f "$flux"
say "storage layout ready"
