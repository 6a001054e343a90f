#!/usr/bin/env bash
# Whole-system benchmark: SIPp callers on 127.0.0.2 -> proxy on 127.0.0.1 ->
# SIPp PBX on 127.0.0.3, for sipwarden and Kamailio in the same run.
# For each rate: success ratio (SIPp's final counts) and the proxy's CPU time
# per call (user+system ticks of all its processes from /proc, before and
# after, divided by the successful calls).
#
#   bench/run.sh [--proxy sipwarden|kamailio|both] [--rate N] [--calls N]
#                [--find-max] [--out FILE] [--children N (Kamailio UDP workers, default 2)]
#   RATES="500 1000 ..." bench/run.sh --find-max   steps of the search
#
# Loopback only; every run is bounded by `timeout`; everything started is
# killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PROXY=both RATE=1000 CALLS=0 FIND_MAX=0 OUT="" CHILDREN=2
while (($#)); do
	case $1 in
	--proxy) PROXY=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--calls) CALLS=$2; shift ;;
	--find-max) FIND_MAX=1 ;;
	--out) OUT=$2; shift ;;
	--children) CHILDREN=$2; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
for tool in sipp; do command -v $tool >/dev/null || { echo "$tool missing: apt-get install sip-tester" >&2; exit 1; }; done

PROXY_PORT=15060 PBX_PORT=15080 ADMIN_PORT=18080
WORK=$(mktemp -d /tmp/sipwarden-bench.XXXXXX)
SCEN=test/testbed/scenarios
TICK=$(getconf CLK_TCK)
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	pkill -f "kamailio -f $WORK" 2>/dev/null || true
	sleep 0.3
	pkill -9 -f "kamailio -f $WORK" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

SIPWARDEN_BIN=${SIPWARDEN_BIN:-$WORK/sipwarden}
if [ ! -x "$SIPWARDEN_BIN" ]; then
	go build -o "$SIPWARDEN_BIN" ./cmd/sipwarden
fi

. bench/lib.sh # cpu_ticks (the script runs from the repository root)

start_proxy() { # $1 = kamailio|sipwarden; sets PROXY_PID
	case $1 in
	kamailio)
		sed -e "s/PROXY_PORT/$PROXY_PORT/" -e "s#\"PBX\"#\"sip:127.0.0.3:$PBX_PORT\"#" -e "s/CHILDREN/$CHILDREN/" \
			bench/kamailio.cfg >"$WORK/kamailio.cfg"
		kamailio -f "$WORK/kamailio.cfg" -DD -E -m 512 -M 32 -w "$WORK" >"$WORK/kamailio.log" 2>&1 &
		PROXY_PID=$!
		;;
	sipwarden)
		mkdir -p "$WORK/data"
		sed -e "s/PROXY_PORT/$PROXY_PORT/" -e "s/PBX_PORT/$PBX_PORT/" -e "s#STORAGE#$WORK/data#" \
			-e "s/ADMIN_PORT/$ADMIN_PORT/" bench/sipwarden.yaml >"$WORK/sipwarden.yaml"
		"$SIPWARDEN_BIN" serve --config "$WORK/sipwarden.yaml" >"$WORK/sipwarden.log" 2>&1 &
		PROXY_PID=$!
		;;
	esac
	PIDS+=("$PROXY_PID")
	sleep 1
	kill -0 "$PROXY_PID" 2>/dev/null || { echo "$1 did not start:"; cat "$WORK/$1.log"; exit 1; }
}

stop_proxy() {
	kill "$PROXY_PID" 2>/dev/null || true
	wait "$PROXY_PID" 2>/dev/null || true
	pkill -f "kamailio -f $WORK" 2>/dev/null || true
	sleep 0.5
}

# run_once PROXY RATE CALLS: prints "ok failed cpu_us_per_call proxy_cpu_percent"
run_once() {
	local proxy=$1 rate=$2 calls=$3
	sipp -sf $SCEN/uas.xml -i 127.0.0.3 -p $PBX_PORT -nostdin -bg >/dev/null 2>&1 || true
	sleep 0.5
	start_proxy "$proxy"
	local before t0 after t1 screen="$WORK/screen-$proxy-$rate.txt"
	before=$(cpu_ticks "$PROXY_PID")
	t0=$(date +%s.%N)
	timeout $((calls / rate + 60)) sipp -sf $SCEN/uac.xml -i 127.0.0.2 -p 0 -s +15551230001 -d 100 \
		-r "$rate" -m "$calls" -l $((rate * 4)) -nostdin -timeout $((calls / rate + 45))s -recv_timeout 8000 \
		-trace_screen -screen_file "$screen" 127.0.0.1:$PROXY_PORT >/dev/null 2>&1 || true
	after=$(cpu_ticks "$PROXY_PID")
	t1=$(date +%s.%N)
	stop_proxy
	pkill -f "sipp -sf $SCEN/uas.xml" 2>/dev/null || true
	sleep 0.5
	local ok failed
	ok=$(grep -E 'Successful call' "$screen" | awk -F'|' '{gsub(/ /,"",$3); print $3}' | tail -1)
	failed=$(grep -E 'Failed call' "$screen" | awk -F'|' '{gsub(/ /,"",$3); print $3}' | tail -1)
	ok=${ok:-0} failed=${failed:-0}
	awk -v ok="$ok" -v f="$failed" -v b="$before" -v a="$after" -v tick="$TICK" -v t0="$t0" -v t1="$t1" 'BEGIN {
		cpu = (a - b) / tick
		printf "%d %d %.1f %.1f %.0f\n", ok, f, (ok > 0 ? cpu / ok * 1e6 : 0), cpu / (t1 - t0) * 100, (ok + f) / (t1 - t0) }'
}

report() { # proxy rate calls ok failed us pct achieved
	local line
	line=$(awk -v p="$1" -v r="$2" -v c="$3" -v ok="$4" -v f="$5" -v us="$6" -v pct="$7" -v ach="$8" 'BEGIN {
		printf "| %s | %d | %d | %d | %d | %d | %.2f %% | %.1f | %.0f %% |", p, r, ach, c, ok, f, (c > 0 ? ok * 100 / c : 0), us, pct }')
	echo "$line"
	[ -n "$OUT" ] && echo "$line" >>"$OUT"
	return 0
}

header="| proxy | calls/s asked | calls/s achieved | calls | successful | failed | success | proxy CPU µs/call | proxy CPU |"
echo "$header"; echo "|---|---|---|---|---|---|---|---|---|"
if [ -n "$OUT" ]; then echo "$header" >>"$OUT"; echo "|---|---|---|---|---|---|---|---|---|" >>"$OUT"; fi
proxies=$PROXY
[ "$PROXY" = both ] && proxies="sipwarden kamailio"

for proxy in $proxies; do
	if ((FIND_MAX)); then
		best=0
		for rate in ${RATES:-500 1000 1500 2000 2500 3000 3500 4000 5000 6000 8000 10000}; do
			read -r ok failed us pct ach < <(run_once "$proxy" "$rate" $((rate * 10)))
			report "$proxy" "$rate" $((rate * 10)) "$ok" "$failed" "$us" "$pct" "$ach"
			if awk -v ok="$ok" -v c=$((rate * 10)) 'BEGIN { exit !(ok * 1000 >= c * 999) }'; then best=$rate; else break; fi
		done
		echo "$proxy: highest rate with >= 99.9 % successful calls: $best calls/s"
		[ -n "$OUT" ] && echo "$proxy: highest rate with >= 99.9 % successful calls: $best calls/s" >>"$OUT"
	else
		calls=$CALLS
		((calls > 0)) || calls=$((RATE * 20))
		read -r ok failed us pct ach < <(run_once "$proxy" "$RATE" "$calls")
		report "$proxy" "$RATE" "$calls" "$ok" "$failed" "$us" "$pct" "$ach"
	fi
done
