#!/bin/sh
# compare.sh runs mediabench against sipwarden's relay and rtpengine
# (userspace, --table=-1) with the same load, alternating, plus the
# generator alone (-direct), and keeps every run's output.
#
#   bench/mediabench/compare.sh [-p] [-r ROUNDS] [-d DURATION] [-o DIR] STREAMS...
#
#   -p   pinned: the generator on CPU 0, the relay on CPU 1 (sipwarden then
#        has GOMAXPROCS 1, one poller; rtpengine gets --num-threads=1).
#        Without -p both relays have 2 workers and every process floats
#        over the 2 CPUs.
#   -n N autogroup nice of each process's session (default -20; 0 leaves
#        them as they are). With sched_autogroup the kernel shares CPU
#        between sessions, not processes: on a machine where other sessions
#        are busy, this is what keeps their load off the measurement. It
#        needs root (CAP_SYS_NICE).
#
# Needs: go, rtpengine (Debian rtpengine-daemon), taskset, setsid.
# Example: bench/mediabench/compare.sh -p -r 2 500 1000
set -eu

pinned=0 rounds=2 dur=20s out=/tmp/mediabench-$(date -u +%Y%m%dT%H%M%S) nice=-20
while getopts pr:d:o:n: opt; do
	case $opt in
	p) pinned=1 ;;
	r) rounds=$OPTARG ;;
	d) dur=$OPTARG ;;
	o) out=$OPTARG ;;
	n) nice=$OPTARG ;;
	*) echo "usage: $0 [-p] [-r rounds] [-d duration] [-o dir] [-n nice] streams..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-p] [-r rounds] [-d duration] [-o dir] [-n nice] streams..." >&2; exit 2; }
mkdir -p "$out"
root=$(cd "$(dirname "$0")/../.." && pwd)
(cd "$root" && go build -o "$out/mediabench" ./bench/mediabench)
mb=$out/mediabench

gen_cpus="" relay_flags="" rtpe_cpus="" threads=2
if [ $pinned = 1 ]; then
	gen_cpus="taskset -c 0" relay_flags="-relay-cpus 1" rtpe_cpus="taskset -c 1" threads=1
fi

# session CMD...: runs CMD in a session of its own whose autogroup has nice $nice.
session() {
	setsid -w sh -c "[ $nice = 0 ] || echo $nice > /proc/self/autogroup; exec \"\$@\"" sh "$@"
}

rtpengine_start() {
	rm -f /tmp/rtpengine.pid
	setsid sh -c "[ $nice = 0 ] || echo $nice > /proc/self/autogroup; exec $rtpe_cpus rtpengine --interface=127.0.0.1 \
		--listen-ng=127.0.0.1:22222 --table=-1 --foreground --log-stderr --log-level=4 --port-min=20000 \
		--port-max=29999 --num-threads=$threads --pidfile=/tmp/rtpengine.pid" >"$out/rtpengine.log" 2>&1 &
	i=0
	while [ ! -s /tmp/rtpengine.pid ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	[ -s /tmp/rtpengine.pid ] || { echo "rtpengine did not start, see $out/rtpengine.log" >&2; exit 1; }
	sleep 0.5
}

rtpengine_stop() {
	pid=$(cat /tmp/rtpengine.pid)
	kill "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
}

for n in "$@"; do
	echo "== $n streams, generator alone (-direct)"
	session $gen_cpus "$mb" -n "$n" -d "$dur" -ports 10000-19999 -direct $relay_flags -relay-autogroup-nice "$nice" \
		>"$out/direct-$n.txt" 2>&1 || true
	cat "$out/direct-$n.txt"
	r=1
	while [ $r -le "$rounds" ]; do
		echo "== $n streams, sipwarden, round $r"
		session $gen_cpus "$mb" -n "$n" -d "$dur" -ports 10000-19999 $relay_flags -relay-autogroup-nice "$nice" \
			>"$out/sipwarden-$n-$r.txt" 2>&1 || true
		cat "$out/sipwarden-$n-$r.txt"
		echo "== $n streams, rtpengine, round $r"
		rtpengine_start
		session $gen_cpus "$mb" -n "$n" -d "$dur" -ports 20000-29999 -rtpengine 127.0.0.1:22222 \
			-rtpengine-pidfile /tmp/rtpengine.pid >"$out/rtpengine-$n-$r.txt" 2>&1 || true
		rtpengine_stop
		cat "$out/rtpengine-$n-$r.txt"
		r=$((r + 1))
	done
done
echo "outputs in $out"
