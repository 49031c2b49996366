#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What an order costs the running system against what its messages cost
# at the least on this machine, all measured in one run:
#
#  1. `skald bench --json` on the running system: CPU per completed order of
#     its services and nats-server, and how many JetStream messages an order
#     publishes (P) and how many deliveries it takes (C).
#  2. bench_relay: CPU per message of a raw js_PublishMsgAsync loop, this
#     process plus its own nats-server (mTLS, file storage).
#  3. bench_consumer: CPU per message of a raw Fetch(128) + SQLite
#     transaction (inbox row + one row, synchronous=FULL) + natsMsg_Ack
#     loop, plus its nats-server.
#
# The floor is P x publish + C x (fetch + db + ack): the broker and database
# work an order's messages need with no Skald code, no HTTP, no saga and
# perfect batching. Cores / floor is the most orders/s this machine could
# carry with that many messages per order.
#
# Usage: bench/order_floor.sh --data DIR [--rate R] [--duration S] [--messages N] [--rounds K] [--bin DIR]
#   DIR  data dir of the running system (skald up --data DIR)
#   R    orders/s offered to the system (default 200); S seconds (default 10)
#   N    messages per raw contender (default 50000), K rounds of each raw benchmark (default 3,
#        their medians are used); DIR of skald and the benches (default build/bin)
set -euo pipefail

usage() { echo "usage: $0 --data DIR [--rate R] [--duration S] [--messages N] [--rounds K] [--bin DIR]" >&2; exit 2; }
data="" rate=200 duration=10 messages=50000 rounds=3 bin="build/bin"
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
    --data) data="$2" ;;
    --rate) rate="$2" ;;
    --duration) duration="$2" ;;
    --messages) messages="$2" ;;
    --rounds) rounds="$2" ;;
    --bin) bin="$2" ;;
    *) usage ;;
    esac
    shift 2
done
[ -n "$data" ] || { echo "order_floor: --data DIR is required" >&2; exit 2; }
[[ "$rate" =~ ^[0-9]+([.][0-9]+)?$ && "$duration" =~ ^[0-9]+$ && "$messages" =~ ^[0-9]+$ && "$rounds" =~ ^[1-9]$ ]] ||
    { echo "order_floor: --rate, --duration and --messages must be numbers, --rounds 1..9" >&2; exit 2; }
for f in skald bench_relay bench_consumer; do
    [ -x "$bin/$f" ] || { echo "order_floor: no $bin/$f (build first, or pass --bin)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "order_floor: needs python3 to read the JSON" >&2; exit 2; }

sys_json=$(mktemp); relay_json=$(mktemp); consumer_json=$(mktemp)
trap 'rm -f "$sys_json" "$relay_json" "$consumer_json"' EXIT

echo "order_floor: skald bench --rate $rate --duration $duration on $data ..." >&2
"$bin/skald" bench --data "$data" --rate "$rate" --duration "$duration" --json >"$sys_json"
echo "order_floor: bench_relay --messages $messages --rounds $rounds ..." >&2
"$bin/bench_relay" --messages "$messages" --rounds "$rounds" --json | tail -n 1 >"$relay_json"
echo "order_floor: bench_consumer --messages $messages --rounds $rounds ..." >&2
"$bin/bench_consumer" --messages "$messages" --rounds "$rounds" --json | tail -n 1 >"$consumer_json"

python3 - "$sys_json" "$relay_json" "$consumer_json" "$(nproc)" <<'EOF'
import json, statistics, sys

system, relay, consumer = (json.load(open(p)) for p in sys.argv[1:4])
cores = int(sys.argv[4])
s, js = system.get("system"), system.get("jetstream")
if s is None or js is None:
    sys.exit("order_floor: skald bench reported no system or jetstream figures (is the system "
             "running on this machine, started by this skald? its stderr says why)")

def median_cpu(doc, contender):
    # Client + nats-server CPU per message, the median over the rounds.
    v = []
    for r in doc["rounds"]:
        x = r[contender]
        if x["server_cpu_us_per_msg"] is None:
            sys.exit(f"order_floor: nats-server's CPU unknown in a {contender} round")
        v.append(x["cpu_us_per_msg"] + x["server_cpu_us_per_msg"])
    return statistics.median(v)

pub = median_cpu(relay, "raw")
con = median_cpu(consumer, "raw_db")
p, c = js["published_per_order"], js["delivered_per_order"]
floor_us = p * pub + c * con
if floor_us <= 0:
    sys.exit(f"order_floor: no JetStream messages per order ({p} published, {c} delivered)")
system_us = (s["services_cpu_ms_per_order"] + s["broker_cpu_ms_per_order"]) * 1000
print(f"machine: {cores} cores; system at {system['completed_rate']:.1f} completed orders/s "
      f"(offered {system['offered_rate']:.0f}/s), {s['cpu_share'] * 100:.0f} % of the cores")
print(f"per order: {p:.2f} messages published, {c:.2f} delivered")
print(f"raw publish (js_PublishMsgAsync, client + nats-server):  {pub:7.2f} us CPU per message"
      f" (median of {len(relay['rounds'])} rounds)")
print(f"raw fetch + SQLite FULL + ack (client + nats-server):    {con:7.2f} us CPU per message"
      f" (median of {len(consumer['rounds'])} rounds)")
print(f"floor: {p:.2f} x {pub:.2f} + {c:.2f} x {con:.2f} = {floor_us / 1000:.3f} ms CPU per order"
      f" -> at most {cores * 1e6 / floor_us:,.0f} orders/s on {cores} cores")
print(f"system: {system_us / 1000:.3f} ms CPU per order (services + nats-server) = "
      f"{system_us / floor_us:.1f} x the floor")
print(json.dumps({"cores": cores, "published_per_order": p, "delivered_per_order": c,
                  "raw_publish_cpu_us": pub, "raw_consume_db_cpu_us": con,
                  "floor_cpu_ms_per_order": floor_us / 1000,
                  "floor_max_orders_per_s": cores * 1e6 / floor_us,
                  "system_cpu_ms_per_order": system_us / 1000,
                  "system_over_floor": system_us / floor_us,
                  "system_completed_rate": system["completed_rate"]}))
EOF
