#!/bin/bash
# Leader kill -9 → first acknowledged write through a surviving server, N times (see
# BENCHMARKS.md, "Leader failover, 3 servers"). Ports 17541–17543; stops its servers by PID.
set -u
K=${KETCH:-$(dirname "$0")/../target/debug/ketch}; D=${HA_DIR:-/tmp/ketch-ha-failover}; N=${N:-10}
rm -rf $D/s*; P=(0 17541 17542 17543); all=()
start() { # i [join args]
  local i=$1; shift
  KETCH_CONFIG=$D/s$i/config setsid nohup $K server --data-dir $D/s$i/data --listen 127.0.0.1:${P[$i]} --no-agent "$@" >>$D/s$i/log 2>&1 </dev/null & echo $! > $D/s$i/pid
  for _ in $(seq 200); do [ "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.1:${P[$i]}/readyz)" = 200 ] && return; sleep 0.05; done; echo "s$i not ready"; exit 1
}
mkdir -p $D/s1 $D/s2 $D/s3
start 1; T=$(cat $D/s1/data/admin.token)
start 2 --join 127.0.0.1:${P[1]} --token $T; start 3 --join 127.0.0.1:${P[1]} --token $T
w() { curl -s -o /dev/null -w '%{http_code}' -m 2 -X POST -H "Authorization: Bearer $T" -H 'content-type: application/json' \
  -d "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"$2\"}}" 127.0.0.1:$1/api/v1/namespaces/default/configmaps; }
for k in $(seq $N); do
  L=$(curl -s -H "Authorization: Bearer $T" 127.0.0.1:${P[1]}/cluster/members 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print([m["address"] for m in d["members"] if m["leader"]][0].split(":")[1])')
  for i in 1 2 3; do [ ${P[$i]} = $L ] && li=$i; done
  others=(); for i in 1 2 3; do [ $i != $li ] && others+=(${P[$i]}); done
  t0=$(date +%s%N); kill -9 $(cat $D/s$li/pid)
  n=0; while :; do n=$((n+1)); p=${others[$((n%2))]}; c=$(w $p fo-$k-$n); [ "$c" = 201 ] && break; done
  t1=$(date +%s%N); ms=$(( (t1-t0)/1000000 )); all+=($ms); echo "kill $k: leader s$li → write ok after $ms ms"
  start $li; sleep 0.5
done
for i in 1 2 3; do kill $(cat $D/s$i/pid); done
printf '%s\n' "${all[@]}" | sort -n | awk '{v[NR]=$1} END {print "rounds", NR, "min", v[1], "p50", v[int((NR+1)/2)], "p90", v[int(NR*0.9)], "max", v[NR], "(ms)"}'
