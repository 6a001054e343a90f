#!/usr/bin/env bash
# Soak: N calls at a fixed rate through the real binary, SIPp on both sides
# (callers on 127.0.0.2 -> sipwarden on 127.0.0.1 -> SIPp PBX on 127.0.0.3),
# sampling over time what a leak would show: the Go heap (go_memstats from
# /metrics), RSS, goroutines, open descriptors, dialogs and transactions held,
# and the CDR backlog; then, after the calls, the same once the RFC 3261
# timers (D, H, J, K: 32 s at most) have run out, with the heap measured
# after a forced GC (/debug/pprof/heap?gc=1) and a heap profile saved.
#
#   bench/soak.sh [--calls N] [--rate R] [--hold MS] [--after S] [--every S]
#                 [--out DIR] [--warm N]
#
#   --calls  calls to place (default 100000)
#   --rate   calls per second (default 1000)
#   --hold   call duration in ms (default 100)
#   --after  seconds to wait after the last call before the final sample (default 40)
#   --every  seconds between samples (default 5)
#   --warm   calls placed first to warm the process up; the heap after them
#            (forced GC) is the warm level (default 2000)
#   --out    directory for samples.tsv, heap profiles and logs (default: a temp dir, kept)
#
# Prints one line per sample and a summary: warm heap, live heap halfway
# through the calls, peak heap, heap after the timers, RSS, goroutines,
# descriptors. Loopback only; every SIPp run is bounded by `timeout`;
# everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=100000 RATE=1000 HOLD=100 AFTER=40 EVERY=5 OUT="" WARM=2000
while (($#)); do
	case $1 in
	--calls) CALLS=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--hold) HOLD=$2; shift ;;
	--after) AFTER=$2; shift ;;
	--every) EVERY=$2; shift ;;
	--warm) WARM=$2; shift ;;
	--out) OUT=$2; shift ;;
	-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }

PROXY_PORT=${PROXY_PORT:-16060} PBX_PORT=${PBX_PORT:-16080} ADMIN_PORT=${ADMIN_PORT:-18090}
OUT=${OUT:-$(mktemp -d /tmp/sipwarden-soak.XXXXXX)}
mkdir -p "$OUT/data"
SCEN=test/testbed/scenarios
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

BIN=${SIPWARDEN_BIN:-$OUT/sipwarden}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/sipwarden

sed -e "s/PROXY_PORT/$PROXY_PORT/" -e "s/PBX_PORT/$PBX_PORT/" -e "s#STORAGE#$OUT/data#" \
	-e "s/ADMIN_PORT/$ADMIN_PORT/" bench/sipwarden.yaml >"$OUT/sipwarden.yaml"

timeout $((CALLS / RATE + WARM / RATE + AFTER + 300)) \
	sipp -sf $SCEN/uas.xml -i 127.0.0.3 -p $PBX_PORT -nostdin >/dev/null 2>&1 &
PIDS+=("$!")
"$BIN" serve --config "$OUT/sipwarden.yaml" >"$OUT/sipwarden.log" 2>&1 &
PID=$!
PIDS+=("$PID")
ADMIN=http://127.0.0.1:$ADMIN_PORT
for _ in $(seq 100); do curl -fs "$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(cat "$OUT/data/admin.token")

metric() { # name: the first sample's value
	awk -v n="$1" '$1 == n { printf "%.0f\n", $2; exit }' "$OUT/metrics.txt"
}
# heap_after_gc: HeapInuse in bytes right after a forced GC (the heap profile's MemStats).
heap_after_gc() {
	curl -fs -H "Authorization: Bearer $TOKEN" "$ADMIN/debug/pprof/heap?gc=1&debug=1" >"$OUT/heap-$1.txt"
	curl -fs -H "Authorization: Bearer $TOKEN" "$ADMIN/debug/pprof/heap" >"$OUT/heap-$1.pb.gz"
	awk '$2 == "HeapInuse" { print $4 }' "$OUT/heap-$1.txt"
}
T0=$(date +%s.%N)
sample() { # label
	curl -fs -H "Authorization: Bearer $TOKEN" "$ADMIN/metrics" >"$OUT/metrics.txt" || return 0
	local rss fds
	rss=$(awk '/^VmRSS/ { print $2 * 1024 }' /proc/$PID/status)
	fds=$(ls /proc/$PID/fd | wc -l)
	printf '%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { print a - b }')" \
		"$(metric sipwarden_cdr_written_total)" "$(metric go_memstats_heap_inuse_bytes)" "$rss" \
		"$(metric go_goroutines)" "$fds" "$(metric sipwarden_proxy_dialogs)" \
		"$(metric sipwarden_proxy_transactions)" "$(metric sipwarden_cdr_queue_depth)" | tee -a "$OUT/samples.tsv"
}
run_calls() { # calls rate screen
	timeout $(($1 / $2 + 90)) sipp -sf $SCEN/uac.xml -i 127.0.0.2 -p 0 -s +15551230001 -d "$HOLD" \
		-r "$2" -m "$1" -l $(($2 * 4)) -nostdin -timeout $(($1 / $2 + 60))s -recv_timeout 8000 \
		-trace_screen -screen_file "$3" 127.0.0.1:$PROXY_PORT >/dev/null 2>&1 || true
}
count() { # label screen
	grep -E "$1" "$2" | awk -F'|' '{gsub(/ /,"",$3); print $3}' | tail -1
}

printf 'phase\tt_s\tcdrs\theap_inuse\trss\tgoroutines\tfds\tdialogs\ttransactions\tcdr_queue\n' | tee "$OUT/samples.tsv"
sample start
if ((WARM > 0)); then
	run_calls "$WARM" "$RATE" "$OUT/screen-warm.txt"
	sleep 35 # the warm-up's transactions end (timers D/H/J/K)
fi
WARM_HEAP=$(heap_after_gc warm)
sample warm
run_calls "$CALLS" "$RATE" "$OUT/screen.txt" &
UAC=$!
PIDS+=("$UAC")
PEAK=0 MID_HEAP=0 STARTED=$(date +%s)
while kill -0 "$UAC" 2>/dev/null; do
	sleep "$EVERY"
	sample calls
	h=$(awk -F'\t' 'END { print $4 }' "$OUT/samples.tsv")
	((h > PEAK)) && PEAK=$h
	# halfway: the live heap under load (calls up + the last 32 s of transactions)
	if ((MID_HEAP == 0 && $(date +%s) - STARTED >= CALLS / RATE / 2)); then MID_HEAP=$(heap_after_gc mid); fi
done
wait "$UAC" || true
END=$(date +%s)
while (($(date +%s) - END < AFTER)); do
	sleep "$EVERY"
	sample after
done
AFTER_HEAP=$(heap_after_gc after)
sample final
OK=$(count 'Successful call' "$OUT/screen.txt")
FAILED=$(count 'Failed call' "$OUT/screen.txt")
read -r _ _ _ _ RSS GOR FDS DLG TX CDRQ < <(tail -1 "$OUT/samples.tsv")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1048576 }'; }
echo
echo "calls: ${OK:-0} successful, ${FAILED:-0} failed, at $RATE calls/s (hold ${HOLD} ms); ${AFTER} s after the last"
echo "heap in use after GC: warm $(mb "$WARM_HEAP"), halfway through the calls $(mb "$MID_HEAP"), after the timers $(mb "$AFTER_HEAP"); peak sampled (no forced GC) $(mb "$PEAK")"
echo "after the timers: RSS $(mb "$RSS"), goroutines $GOR, descriptors $FDS, dialogs $DLG, transactions $TX, CDR queue $CDRQ"
echo "samples, heap profiles (heap-warm.pb.gz, heap-after.pb.gz: go tool pprof -sample_index=inuse_space) and logs in $OUT"
