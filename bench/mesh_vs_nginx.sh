#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Benchmark (not a test): GET /api/v1/products/{sku} through the Skald gateway
# (plain HTTP in, mTLS with the full traffic policy to orderview) against nginx
# proxying the same orderview instances over mTLS with the gateway's
# certificate, in the same run. Prints requests/s, p50/p99 latency, CPU per
# request of the proxy process, and the ratios gateway/nginx.
#
# Then bench_http (bench/bench_http.c, a libcurl load generator that presents
# the gateway's client certificate, which wrk cannot) measures three
# contenders in the same run: orderview called directly over mTLS, the
# gateway and nginx; each at concurrency 1 (exact p50/p90/p99 over
# --c1-requests requests) and at concurrency --connections (throughput), and
# prints "gateway adds X ms at p50 over direct" and the ratios.
#
# usage: bench/mesh_vs_nginx.sh [--build DIR] [--data DIR --port N]
#                               [--duration S] [--connections N] [--threads N]
#                               [--nginx-workers N] [--warmup S]
#                               [--c1-requests N] [--http-rounds N] [--no-bench-http]
#
#   --build DIR        build dir holding bin/skald (default: build)
#   --data DIR --port N  use an already running `skald up` (not stopped at the end)
#   --duration S       seconds of each measured wrk run (default 10)
#   --connections N    wrk connections (default 32)
#   --threads N        wrk threads (default 2)
#   --nginx-workers N  nginx worker_processes (default 1)
#   --warmup S         seconds of the unmeasured wrk run before each one (default 2)
#   --c1-requests N    bench_http: measured requests at concurrency 1 (default 5000,
#                      after 500 unmeasured ones); its concurrency-N phase uses
#                      --connections, --duration and --warmup
#   --http-rounds N    bench_http: rounds, rotating the order of the contenders (default 1)
#   --no-bench-http    only the wrk comparison (bench_http is then not needed)
#
# Installs nginx and wrk from Debian (apt-get) when missing; needs root for
# that (service start-up is left to policy-rc.d: the script never uses the
# system nginx service). Everything listens on 127.0.0.1 only. Every step is
# bounded in time; the whole run takes about 2 * (warmup + duration) for wrk,
# plus http-rounds * 3 * (warmup + duration + ~5 s) for bench_http, plus the
# start-up of the system (~1-5 s): about 1.5 minutes with the defaults.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
data=""
gw_port=""
duration=10
conns=32
threads=2
nginx_workers=1
warmup=2
c1_requests=5000
http_rounds=1
bench_http=1

die() { echo "mesh_vs_nginx: $*" >&2; exit 1; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

while [ $# -gt 0 ]; do
    if [ "$1" = --no-bench-http ]; then
        bench_http=0
        shift
        continue
    fi
    [ $# -ge 2 ] || die "$1: missing value"
    case "$1" in
    --build) build=$2 ;;
    --data) data=$2 ;;
    --port) gw_port=$2 ;;
    --duration) duration=$2 ;;
    --connections) conns=$2 ;;
    --threads) threads=$2 ;;
    --nginx-workers) nginx_workers=$2 ;;
    --warmup) warmup=$2 ;;
    --c1-requests) c1_requests=$2 ;;
    --http-rounds) http_rounds=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
    esac
    shift 2
done
for v in duration conns threads nginx_workers warmup c1_requests http_rounds; do
    is_uint "${!v}" || die "--${v//_/-}: expected a positive integer, got \"${!v}\""
done
[ "$duration" -le 120 ] || die "--duration: at most 120 s"
[ "$warmup" -le 60 ] || die "--warmup: at most 60 s"
[ "$c1_requests" -le 100000 ] || die "--c1-requests: at most 100000"
[ "$http_rounds" -le 5 ] || die "--http-rounds: at most 5"
[ "$conns" -le 1024 ] || die "--connections: at most 1024"
if [ -n "$data" ] || [ -n "$gw_port" ]; then
    [ -n "$data" ] && [ -n "$gw_port" ] || die "--data and --port go together"
    is_uint "$gw_port" || die "--port: expected a port, got \"$gw_port\""
    [ -d "$data/pki" ] || die "--data: $data/pki not found (is it a skald data dir?)"
fi
build=$(cd "$build" 2>/dev/null && pwd) || die "--build: no such directory"
[ -z "$data" ] || data=$(cd "$data" && pwd)
skald="$build/bin/skald"
[ -x "$skald" ] || die "$skald not found: build first (cmake --build $build)"
bench_http_bin="$build/bin/bench_http"
[ "$bench_http" = 0 ] || [ -x "$bench_http_bin" ] ||
    die "$bench_http_bin not found: build it (cmake --build $build --target bench_http) or pass --no-bench-http"

# ------------------------------------------------------------------ tools
need_install=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_install+=(nginx)
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
if [ ${#need_install[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "needs ${need_install[*]}: run as root or install them"
    echo "installing ${need_install[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y --no-install-recommends \
        "${need_install[@]}" >/dev/null || die "apt-get install ${need_install[*]} failed"
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
command -v curl >/dev/null 2>&1 || die "curl not found"
hz=$(getconf CLK_TCK)

# ------------------------------------------------------------------ clean-up
tmp=$(mktemp -d /tmp/sk-mesh-vs-nginx.XXXXXX)
cd "$tmp" # nothing below writes outside it
skald_pid=""
nginx_pid=""

stop_pid() { # PID NAME GRACE_S: TERM, wait up to GRACE_S, then KILL
    local pid=$1 name=$2 grace=$3 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "mesh_vs_nginx: $name (pid $pid) still running after ${grace}s, killing" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    [ -z "$nginx_pid" ] || stop_pid "$nginx_pid" nginx 5
    [ -z "$skald_pid" ] || stop_pid "$skald_pid" "skald up" 30
    if [ $rc -ne 0 ]; then
        for f in "$tmp/skald-up.log" "$tmp/nginx/error.log"; do
            [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 20 "$f" >&2; }
        done
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # a TCP port nobody listens on, on 127.0.0.1
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
        if [ -z "$(ss -Htln "( sport = :$p )" 2>/dev/null)" ]; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

http_code() { # URL -> HTTP status (000 when no answer)
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true
}

wait_for() { # URL WANT_CODE TIMEOUT_S WHAT
    local url=$1 want=$2 secs=$3 what=$4 deadline
    deadline=$((SECONDS + secs))
    while [ "$(http_code "$url")" != "$want" ]; do
        [ $SECONDS -lt $deadline ] || die "$what: $url did not answer $want within ${secs}s"
        if [ -n "$skald_pid" ] && ! kill -0 "$skald_pid" 2>/dev/null; then
            skald_pid=""
            die "$what: skald up exited"
        fi
        sleep 0.1
    done
}

# ------------------------------------------------------------------ skald up
if [ -z "$data" ]; then
    data="$tmp/data"
    gw_port=$(free_port)
    "$skald" up --config "$repo/skald.yaml" --data "$data" --port "$gw_port" \
        >"$tmp/skald-up.log" 2>&1 &
    skald_pid=$!
    wait_for "http://127.0.0.1:$gw_port/readyz" 200 90 "skald up"
fi
gw="http://127.0.0.1:$gw_port"

# One product, then wait until the read side (orderview) shows it.
sku="BENCH-$(date +%s%N)"
code=$(curl -s -o "$tmp/seed.json" -m 5 -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' \
    -d "{\"sku\":\"$sku\",\"name\":\"Bench\",\"price_cents\":1999,\"stock\":1000}" \
    "$gw/api/v1/products" || true)
[ "$code" = 201 ] || die "seeding POST /api/v1/products answered $code: $(cat "$tmp/seed.json" 2>/dev/null)"
path="/api/v1/products/$sku"
wait_for "$gw$path" 200 30 "product projection"

# ------------------------------------------------------------------ processes
# `skald status` columns: INSTANCE SERVICE ADDRESS PID HEALTH UPSTREAMS.
timeout 30 "$skald" status --data "$data" >"$tmp/status.txt" 2>"$tmp/status.err" ||
    die "skald status failed: $(cat "$tmp/status.err")"
mapfile -t ov_addrs < <(awk '$2 == "orderview" && $5 == "ready" { print $3 }' "$tmp/status.txt")
mapfile -t ov_pids < <(awk '$2 == "orderview" && $5 == "ready" { print $4 }' "$tmp/status.txt")
mapfile -t gw_pids < <(awk '$2 == "gateway" { print $4 }' "$tmp/status.txt")
[ ${#ov_addrs[@]} -gt 0 ] || die "no ready orderview instance in skald status: $(cat "$tmp/status.txt")"
[ ${#gw_pids[@]} -eq 1 ] || die "expected one gateway instance in skald status, got ${#gw_pids[@]}"

# ------------------------------------------------------------------ nginx
# The orderview certificates carry only a URI SAN (spiffe://...), which nginx
# cannot match against a host name, so proxy_ssl_verify is off: nginx encrypts
# and presents the gateway's client certificate (which orderview's
# authorization requires) but does not check the server's identity, unlike the
# gateway (CA chain + SPIFFE ID). With keep-alive this check happens once per
# connection, not per request, so it does not affect the steady state.
# keepalive_requests is raised on both sides (nginx's default, 1000, closes a
# connection after 1000 requests: one reconnect, and upstream one TLS
# handshake, per 1000 requests), as the gateway keeps its connections open.
ngx_port=$(free_port)
mkdir -p "$tmp/nginx"
{
    echo "worker_processes $nginx_workers;"
    echo "user root;"
    echo "daemon off;"
    echo "pid $tmp/nginx/nginx.pid;"
    echo "error_log $tmp/nginx/error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "    access_log off;"
    echo "    client_body_temp_path $tmp/nginx/client_body;"
    echo "    proxy_temp_path $tmp/nginx/proxy;"
    echo "    fastcgi_temp_path $tmp/nginx/fastcgi;"
    echo "    uwsgi_temp_path $tmp/nginx/uwsgi;"
    echo "    scgi_temp_path $tmp/nginx/scgi;"
    echo "    upstream orderview {"
    for a in "${ov_addrs[@]}"; do echo "        server $a;"; done
    echo "        keepalive 64;"
    echo "        keepalive_requests 100000000;"
    echo "    }"
    echo "    server {"
    echo "        listen 127.0.0.1:$ngx_port;"
    echo "        keepalive_requests 100000000;"
    echo "        location /api/v1/products/ {"
    echo "            proxy_pass https://orderview/products/;"
    echo "            proxy_http_version 1.1;"
    echo "            proxy_set_header Connection \"\";"
    echo "            proxy_ssl_certificate $data/pki/gateway.pem;"
    echo "            proxy_ssl_certificate_key $data/pki/gateway.key;"
    echo "            proxy_ssl_trusted_certificate $data/pki/ca.pem;"
    echo "            proxy_ssl_verify off;"
    echo "            proxy_ssl_protocols TLSv1.3;"
    echo "            proxy_ssl_session_reuse on;"
    echo "            proxy_connect_timeout 1s;"
    echo "            proxy_read_timeout 5s;"
    echo "        }"
    echo "    }"
    echo "}"
} >"$tmp/nginx/nginx.conf"
"$nginx_bin" -t -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" >"$tmp/nginx/test.log" 2>&1 ||
    die "nginx -t: $(cat "$tmp/nginx/test.log")"
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" >>"$tmp/nginx/error.log" 2>&1 &
nginx_pid=$!
ngx="http://127.0.0.1:$ngx_port"
wait_for "$ngx$path" 200 10 "nginx"

# Same answer both ways before measuring anything.
curl -s -m 5 "$gw$path" >"$tmp/gw.body"
curl -s -m 5 "$ngx$path" >"$tmp/ngx.body"
cmp -s "$tmp/gw.body" "$tmp/ngx.body" ||
    die "gateway and nginx answer differently: $(cat "$tmp/gw.body") vs $(cat "$tmp/ngx.body")"
mapfile -t ngx_workers < <(pgrep -P "$nginx_pid" || true)
[ ${#ngx_workers[@]} -gt 0 ] || die "no nginx worker process under pid $nginx_pid"

# ------------------------------------------------------------------ measure
proc_sample() { # PID... -> "utime stime ctxsw" summed over the processes and all their threads
    local ut=0 st=0 cs=0 pid s t
    for pid in "$@"; do
        s=$(cat "/proc/$pid/stat" 2>/dev/null) || die "process $pid is gone"
        s=${s##*) } # the fields after ") ": comm may contain spaces; utime, stime are 14, 15
        read -r -a f <<<"$s"
        ut=$((ut + f[11]))
        st=$((st + f[12]))
        for t in /proc/"$pid"/task/*/status; do
            cs=$((cs + $(awk '/^(non)?voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }' "$t" 2>/dev/null || echo 0)))
        done
    done
    echo "$ut $st $cs"
}

thread_ticks() { # PID -> one line per thread: "tid comm utime+stime"
    local t s
    for t in /proc/"$1"/task/*; do
        s=$(cat "$t/stat" 2>/dev/null) || continue
        s=${s##*) }
        read -r -a f <<<"$s"
        echo "${t##*/} $(tr -d ' ' <"$t/comm") $((f[11] + f[12]))"
    done | sort
}

to_ms() { # wrk duration ("812.00us", "1.20ms", "1.01s") -> ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else { printf "nan" } }'
}

run_wrk() { # NAME URL PROXY_PIDS... -> sets r_rps r_p50 r_p99 r_reqs r_cpu_us r_sys_pct r_cs r_ov_us
    local name=$1 url=$2 out=$tmp/wrk-$1.txt errs non2xx pu0 ps0 pc0 pu1 ps1 pc1 ou0 os0 ou1 os1
    shift 2
    timeout $((warmup + 30)) wrk -t"$threads" -c"$conns" -d"${warmup}s" "$url" >/dev/null 2>&1 ||
        die "$name: wrk warm-up failed"
    thread_ticks "$1" >"$tmp/threads-$name.0"
    read -r pu0 ps0 pc0 <<<"$(proc_sample "$@")"
    read -r ou0 os0 _ <<<"$(proc_sample "${ov_pids[@]}")"
    timeout $((duration + 30)) wrk -t"$threads" -c"$conns" -d"${duration}s" --timeout 5s --latency "$url" \
        >"$out" 2>&1 || die "$name: wrk failed: $(cat "$out")"
    read -r pu1 ps1 pc1 <<<"$(proc_sample "$@")"
    thread_ticks "$1" >"$tmp/threads-$name.1"
    read -r ou1 os1 _ <<<"$(proc_sample "${ov_pids[@]}")"
    r_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    r_reqs=$(awk '/requests in/ { print $1 }' "$out")
    r_p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    r_p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    [ -n "$r_rps" ] && [ -n "$r_reqs" ] && [ "$r_reqs" -gt 0 ] || die "$name: cannot parse wrk output: $(cat "$out")"
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    errs=$(awk '/Socket errors:/ { print }' "$out")
    [ -z "$non2xx" ] || echo "mesh_vs_nginx: $name: $non2xx non-2xx responses" >&2
    [ -z "$errs" ] || echo "mesh_vs_nginx: $name: $errs" >&2
    per_req() { awk -v d="$1" -v k="$2" -v n="$r_reqs" 'BEGIN { printf "%.1f", d * k / n }'; }
    r_cpu_us=$(per_req $((pu1 - pu0 + ps1 - ps0)) "$((1000000 / hz))")
    r_sys_pct=$(awk -v s=$((ps1 - ps0)) -v t=$((pu1 - pu0 + ps1 - ps0)) 'BEGIN { printf "%.0f", (t > 0) ? 100 * s / t : 0 }')
    r_cs=$(awk -v d=$((pc1 - pc0)) -v n="$r_reqs" 'BEGIN { printf "%.2f", d / n }')
    r_ov_us=$(per_req $((ou1 - ou0 + os1 - os0)) "$((1000000 / hz))")
}

echo "GET $path, wrk -t$threads -c$conns -d${duration}s --latency (after ${warmup}s warm-up)," \
    "nginx worker_processes $nginx_workers, orderview instances: ${ov_addrs[*]}"
run_wrk gateway "$gw$path" "${gw_pids[@]}"
gw_threads=$(join "$tmp/threads-gateway.0" "$tmp/threads-gateway.1" |
    awk -v k="$((1000000 / hz))" -v n="$r_reqs" '$5 > $3 { printf "%s %s/%s %.1f µs/req\n", sep, $2, $1, ($5 - $3) * k / n; sep = "," }' |
    tr -d '\n')
g=("$r_rps" "$r_p50" "$r_p99" "$r_cpu_us" "$r_sys_pct" "$r_cs" "$r_ov_us" "$r_reqs")
run_wrk nginx "$ngx$path" "${ngx_workers[@]}"
n=("$r_rps" "$r_p50" "$r_p99" "$r_cpu_us" "$r_sys_pct" "$r_cs" "$r_ov_us" "$r_reqs")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
printf '\n| proxy | req/s | p50 ms | p99 ms | proxy CPU µs/req | proxy sys %% | proxy ctx switches/req | orderview CPU µs/req | requests |\n'
printf '| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n'
printf '| gateway | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${g[@]}"
printf '| nginx | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${n[@]}"
printf '| gateway/nginx | %s | %s | %s | %s | | %s | %s | |\n' "$(ratio "${g[0]}" "${n[0]}")" \
    "$(ratio "${g[1]}" "${n[1]}")" "$(ratio "${g[2]}" "${n[2]}")" "$(ratio "${g[3]}" "${n[3]}")" \
    "$(ratio "${g[5]}" "${n[5]}")" "$(ratio "${g[6]}" "${n[6]}")"
printf '\ngateway CPU per thread (comm/tid):%s\n' "$gw_threads"
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------ bench_http
# The same GET through the three contenders with one client that can present
# the gateway's certificate: orderview directly (both instances, over mTLS,
# as the gateway calls them), the gateway and nginx. bench_http checks every
# answer is 200 with the same body, and reports the connections it had to
# open while measuring (0: no handshake in the steady state).
[ "$bench_http" = 1 ] || exit 0
direct_urls=""
for a in "${ov_addrs[@]}"; do direct_urls+="${direct_urls:+,}https://$a/products/$sku"; done
ov_pid_list=$(IFS=,; echo "${ov_pids[*]}")
ngx_pid_list=$(IFS=,; echo "${ngx_workers[*]}")
# Worst case per contender: 5000 requests at c=1 at a few ms each, plus the timed phases.
http_limit=$((http_rounds * 3 * (2 * warmup + duration + 30 + c1_requests / 200) + 30))
echo
timeout "$http_limit" "$bench_http_bin" \
    --target "direct=$direct_urls" --target "gateway=$gw$path" --target "nginx=$ngx$path" \
    --cert "$data/pki/gateway.pem" --key "$data/pki/gateway.key" --cacert "$data/pki/ca.pem" \
    --requests "$c1_requests" --warmup-requests 500 --concurrency "$conns" \
    --duration "$duration" --warmup "$warmup" --rounds "$http_rounds" \
    --proc "gateway=${gw_pids[0]}" --proc "nginx=$ngx_pid_list" --proc "orderview=$ov_pid_list" ||
    die "bench_http failed (exit $?)"
printf 'load average: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
