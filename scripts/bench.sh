#!/usr/bin/env bash
# make bench: a local 3-node redraft cluster against redis-server, durable
# (--appendonly yes --appendfsync always) and in-memory (--save '' --appendonly no),
# on the same machine in the same run, with redis-benchmark from Debian's
# redis-tools. Prints a markdown table with ratios and writes it to
# bench-results/latest.md (docs/benchmarks.md quotes it).
#
# BENCH_N (requests per run, default 100000) and BENCH_TESTS narrow a run;
# BENCH_QUICK=1 skips the memory, pub/sub latency and failover sections.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-./bin/redraft}
N=${BENCH_N:-100000}
C=50
TESTS=${BENCH_TESTS:-set get incr lock publish evalset evalrmw}
work=$(mktemp -d /tmp/redraft-bench.XXXXXX)
out=bench-results
mkdir -p "$out"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
waitping() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no PING on $1" >&2; return 1; }
resp_port() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resp"].rsplit(":",1)[1])' "$1"; }

# --- servers -----------------------------------------------------------------
rd_durable=$(freeport); rd_mem=$(freeport)
mkdir -p "$work/redis-durable" "$work/redis-mem"
redis-server --port "$rd_durable" --bind 127.0.0.1 --dir "$work/redis-durable" --appendonly yes --appendfsync always --save '' >"$work/redis-durable.log" 2>&1 & pids+=($!)
redis-server --port "$rd_mem" --bind 127.0.0.1 --dir "$work/redis-mem" --appendonly no --save '' >"$work/redis-mem.log" 2>&1 & pids+=($!)

raft=(); for i in 1 2 3; do raft+=("127.0.0.1:$(freeport)"); done
cluster="n1=${raft[0]},n2=${raft[1]},n3=${raft[2]}"
for i in 1 2 3; do
  "$BIN" --id "n$i" --addr 127.0.0.1:0 --raft-addr "${raft[$((i-1))]}" --data-dir "$work/n$i" \
    --initial-cluster "$cluster" --log-level warn >"$work/n$i.log" 2>&1 & pids+=($!)
  redraft_pid[$i]=$!
done
for i in 1 2 3; do for _ in $(seq 200); do [ -f "$work/n$i/addrs.json" ] && break; sleep 0.05; done; port[$i]=$(resp_port "$work/n$i/addrs.json"); done
waitping "$rd_durable"; waitping "$rd_mem"
leader=""; for _ in $(seq 200); do
  for i in 1 2 3; do [ "$(redis-cli -p "${port[$i]}" role 2>/dev/null | head -1)" = master ] && leader=$i; done
  [ -n "$leader" ] && break; sleep 0.05
done
[ -n "$leader" ] || { echo "no leader" >&2; exit 1; }
follower=$(( leader % 3 + 1 ))
echo "redis durable :$rd_durable  redis in-memory :$rd_mem  redraft leader n$leader :${port[$leader]}  follower n$follower :${port[$follower]}"

if [ "${BENCH_QUICK:-}" != 1 ]; then
  # --- memory: 100k keys of 1 KB, on the fresh cluster ----------------------------------
  # Measured first, so the figure is what such a node holds, not what the
  # throughput runs left behind; the keys are then flushed.
  fill() { seq 0 99999 | awk -v v="$(head -c 1024 /dev/zero | tr '\0' x)" '{printf "SET key:%d %s\r\n", $1, v}' | redis-cli -p "$1" --pipe >/dev/null; }
  rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
  fill "${port[$leader]}"; fill "$rd_mem"
  for _ in $(seq 100); do
    a=$(redis-cli -p "${port[$follower]}" dbsize); [ "$a" = 100000 ] && break; sleep 0.1
  done
  {
    echo "| process | keys | RSS MB |"
    echo "| --- | --- | --- |"
    for i in 1 2 3; do echo "| redraft n$i | $(redis-cli -p "${port[$i]}" dbsize) | $(( $(rss_kb "${redraft_pid[$i]}") / 1024 )) |"; done
    echo "| redis-server (in-memory) | $(redis-cli -p "$rd_mem" dbsize) | $(( $(rss_kb "$(pgrep -f "redis-server 127.0.0.1:$rd_mem")") / 1024 )) |"
  } > "$out/memory.md"
  redis-cli -p "${port[$leader]}" flushall >/dev/null; redis-cli -p "$rd_mem" flushall >/dev/null
fi

# --- throughput -----------------------------------------------------------------
# bench PORT TEST PIPELINE -> "rps p50 p99"
bench() {
  local port=$1 test=$2 p=$3 csv
  case $test in
    set)  csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 100000 -t set --csv) ;;
    get)  csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 100000 -t get --csv) ;;
    incr) csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 100000 -t incr --csv) ;;
    lock) csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 100000 --csv SET 'lock:__rand_int__' host EX 10 NX) ;;
    publish) csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 100000 --csv PUBLISH 'chan:__rand_int__' payload) ;;
    evalset) csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 100000 --csv EVAL "$EVAL_SET" 1 'key:__rand_int__' value) ;;
    evalrmw) csv=$(redis-benchmark -p "$port" -c $C -n "$N" -P "$p" -r 1000 --csv EVAL "$EVAL_RMW" 1 'doc:__rand_int__' 2026-11-21T00:00:00Z) ;;
  esac
  # the test name may hold commas (EVAL bodies): count fields from the end
  echo "$csv" | tail -1 | awk -F',' '{for (i = 1; i <= NF; i++) gsub(/"/, "", $i); print $(NF-6), $(NF-3), $(NF-1)}'
}

# A small SET script, and a cjson read-modify-write of a ~1 KB JSON document
# (the shape of Node-RED's context store updates).
EVAL_SET="return redis.call('SET', KEYS[1], ARGV[1])"
EVAL_RMW=$(cat lua/testdata/bench_rmw.lua) # also lua's BenchmarkEvalBenchRMW and differential cases

declare -A R
targets="durable mem leader follower"
portof() { case $1 in durable) echo "$rd_durable";; mem) echo "$rd_mem";; leader) echo "${port[$leader]}";; follower) echo "${port[$follower]}";; esac; }
# expiring PORT: how many databases still hold a key with a TTL (INFO
# keyspace's expires), or "?" when the server does not answer.
expiring() {
  local info
  info=$(redis-cli -p "$1" info keyspace 2>/dev/null) || { echo "?"; return; }
  grep -c 'expires=[1-9]' <<<"$info" || true
}
# waitexpired: until no server, redis or redraft, holds a key with a TTL
# (60 s at most each).
waitexpired() {
  local q
  for q in "$rd_durable" "$rd_mem" "${port[1]}" "${port[2]}" "${port[3]}"; do
    for _ in $(seq 600); do [ "$(expiring "$q")" = 0 ] && continue 2; sleep 0.1; done
    echo "warning: keys with a TTL still on :$q after 60 s" >&2
  done
}

# The lock test's keys (10 s TTL) would expire during the runs after it,
# and on redraft expiry is replicated work on every node (see the pub/sub
# section); the follower's run would also find the leader's keys still
# there and its SET NX write nothing. Each row should measure its own
# command, so every run after a lock run waits until its keys are gone.
for p in 1 16; do
  for t in $TESTS; do
    for tg in $targets; do
      R[$tg,$t,$p]=$(bench "$(portof "$tg")" "$t" "$p")
      echo "P$p $t $tg: ${R[$tg,$t,$p]}"
      if [ "$t" = lock ]; then waitexpired; fi
    done
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
field() { echo "$1" | awk -v f="$2" '{print $f}'; }

{
  echo "| test | -P | redis durable rps | redis in-memory rps | redraft leader rps (p50/p99 ms) | redraft follower rps (p50/p99 ms) | leader / durable | follower / leader | leader / in-memory |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for p in 1 16; do for t in $TESTS; do
    d=$(field "${R[durable,$t,$p]}" 1); m=$(field "${R[mem,$t,$p]}" 1)
    l=$(field "${R[leader,$t,$p]}" 1); f=$(field "${R[follower,$t,$p]}" 1)
    echo "| $t | $p | $d | $m | $l ($(field "${R[leader,$t,$p]}" 2)/$(field "${R[leader,$t,$p]}" 3)) | $f ($(field "${R[follower,$t,$p]}" 2)/$(field "${R[follower,$t,$p]}" 3)) | $(ratio "$l" "$d") | $(ratio "$f" "$l") | $(ratio "$l" "$m") |"
  done; done
} > "$out/throughput.md"

if [ "${BENCH_QUICK:-}" = 1 ]; then cat "$out/throughput.md"; exit 0; fi

# --- pub/sub: publish-to-delivery latency across nodes -----------------------------------
# 100 subscribers spread over the three nodes, 1,000 messages/s published
# round-robin over the nodes (open loop); redraft-bench checks nothing is
# lost, duplicated or reordered. Against redis-server (one node) with the
# same tool for scale.
#
# The first runs measure delivery with no key expiring on any server; the
# second runs measure it while 50k keys expire (SET ... EX 3 just before
# the run: they expire from its second second on), as a mass lock expiry
# would. Expiry is work on every node (a log entry every 20 ms, a deletion
# per key on each), so on two shared cores it shows in the tail.
go build -o "$work/redraft-bench" ./cmd/redraft-bench
addrs="127.0.0.1:${port[1]},127.0.0.1:${port[2]},127.0.0.1:${port[3]}"
{
  echo "| target | publish-to-delivery p50 / p99 ms | PUBLISH round trip p50 / p99 ms | lost / duplicated / out of order |"
  echo "| --- | --- | --- | --- |"
  for run in idle expiring; do
    for tg in redraft redis; do
      a=$addrs; fillport=${port[$leader]}; [ $tg = redis ] && { a="127.0.0.1:$rd_mem"; fillport=$rd_mem; }
      waitexpired # nothing left expiring from a run before, on any server
      if [ $run = idle ]; then
        label=$tg
      else
        label="$tg, 50k keys expiring"
        redis-benchmark -p "$fillport" -c 50 -n 50000 -P 16 -r 100000000 -q SET 'exp:__rand_int__' v EX 3 >/dev/null
      fi
      "$work/redraft-bench" pubsub --addrs "$a" --subscribers 100 --rate 1000 --duration 10s --json >"$work/pubsub-$tg.json"
      python3 - "$label" "$work/pubsub-$tg.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
l, a = r["latency_us"], r["publish_ack_us"]
print(f"| {sys.argv[1]} | {l['P50']/1000:.2f} / {l['P99']/1000:.2f} | {a['P50']/1000:.2f} / {a['P99']/1000:.2f} | {r['lost']} / {r['duplicates']} / {r['out_of_order']} |")
PY
    done
  done
} > "$out/pubsub.md"

# --- failover: kill -9 the leader, time to the first acknowledged write ------------------------
failover_ms=()
exec 3>&2 2>/dev/null # the shell reports each killed node; the figures say enough
for round in 1 2 3 4 5; do
  leader=""; for _ in $(seq 400); do
    for i in 1 2 3; do [ "$(redis-cli -p "${port[$i]}" role 2>/dev/null | head -1)" = master ] && leader=$i; done
    [ -n "$leader" ] && break; sleep 0.05
  done
  survivor=$(( leader % 3 + 1 ))
  start=$(date +%s%N)
  kill -9 "${redraft_pid[$leader]}"
  for _ in $(seq 2000); do
    [ "$(redis-cli -p "${port[$survivor]}" set failover "$round" 2>/dev/null)" = OK ] && break
  done
  failover_ms+=($(( ($(date +%s%N) - start) / 1000000 )))
  "$BIN" --id "n$leader" --addr "127.0.0.1:${port[$leader]}" --raft-addr "${raft[$((leader-1))]}" --data-dir "$work/n$leader" \
    --initial-cluster "$cluster" --log-level warn >>"$work/n$leader.log" 2>&1 & pids+=($!)
  redraft_pid[$leader]=$!
  waitping "${port[$leader]}"
  for _ in $(seq 400); do [ "$(redis-cli -p "${port[$leader]}" get failover 2>/dev/null)" = "$round" ] && break; sleep 0.05; done
done
exec 2>&3
sorted=$(printf '%s\n' "${failover_ms[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${failover_ms[@]}" | sort -n | sed -n 3p)
echo "failover (kill -9 leader -> first OK write on a survivor), ms: $sorted; median $median" > "$out/failover.md"

{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) — $(nproc) cores, N=$N, -c $C"
  echo
  cat "$out/throughput.md"; echo; cat "$out/pubsub.md"; echo; cat "$out/memory.md"; echo; cat "$out/failover.md"
} | tee "$out/latest.md"
