#!/usr/bin/env bash
# Three local redraft nodes in the foreground: RESP on 6379/6380/6381, Raft on
# 7379/7380/7381, data in ./redraft-cluster/nN. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/redraft
cluster="n1=127.0.0.1:7379,n2=127.0.0.1:7380,n3=127.0.0.1:7381"
pids=()
trap 'kill ${pids[@]} 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  "$bin" --id "n$i" --addr "127.0.0.1:$((6378 + i))" --raft-addr "127.0.0.1:$((7378 + i))" \
    --data-dir "redraft-cluster/n$i" --initial-cluster "$cluster" > >(sed -u "s/^/n$i| /") 2>&1 &
  pids+=($!)
done
wait
