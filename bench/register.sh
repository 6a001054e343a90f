#!/usr/bin/env bash
# Registrar benchmark: authenticated REGISTER transactions (REGISTER, 401,
# REGISTER with digest credentials, 200) against sipwarden (a digest trunk
# with its registrar, bench/sipwarden-register.yaml) and Kamailio (auth +
# registrar + usrloc in memory, bench/kamailio-register.cfg) in the same run,
# for MD5 and SHA-256, at increasing rates.
#
#   bench/register.sh [--server "sipwarden kamailio"|both|all] [--algorithms "MD5 SHA-256"]
#                     [--rates "500 1000 2000 3000"] [--seconds 10] [--repeat 3]
#                     [--accounts 10000] [--client regload|sipp] [--children 2] [--out FILE]
#
# Per run: registrations that succeeded and failed (the client's counts), the
# rate achieved (successful registrations per second of the run), the
# server's CPU time per successful registration in µs (user+system ticks of
# the server process and its children from /proc, before the client starts
# and 1.2 s after it ends, as bench/run.sh does) and its CPU load. Runs are interleaved: for each repeat,
# rate and algorithm, both servers run one after the other (their order
# alternating between repeats), each started afresh with no bindings. At the
# end, the medians over the repeats and the ratio sipwarden ÷ Kamailio.
#
# Servers: sipwarden; kamailio (bindings in memory only, usrloc db_mode 0);
# kamailio-sqlite (bindings written back to SQLite every second, db_mode 2,
# as sipwarden does: needs the kamailio-sqlite-modules package and sqlite3).
# both = sipwarden kamailio; all = the three.
#
# Client: bench/regload (default; MD5 and SHA-256) or SIPp 3.6 with
# test/testbed/scenarios/register_digest.xml (MD5 only: SIPp computes no other).
# Loopback only: servers on 127.0.0.1, the client on 127.0.0.46; every run is
# bounded by `timeout`; everything started is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=both ALGORITHMS="MD5 SHA-256" RATES="500 1000 2000 3000" SECONDS_PER_RUN=10 REPEAT=3
ACCOUNTS=10000 CLIENT=regload CHILDREN=2 OUT=""
while (($#)); do
	case $1 in
	--server) SERVER=$2; shift ;;
	--algorithms) ALGORITHMS=$2; shift ;;
	--rates) RATES=$2; shift ;;
	--seconds) SECONDS_PER_RUN=$2; shift ;;
	--repeat) REPEAT=$2; shift ;;
	--accounts) ACCOUNTS=$2; shift ;;
	--client) CLIENT=$2; shift ;;
	--children) CHILDREN=$2; shift ;;
	--out) OUT=$2; shift ;;
	-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
	*) echo "unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
case $SERVER in both) servers="sipwarden kamailio" ;; all) servers="sipwarden kamailio kamailio-sqlite" ;; *) servers=$SERVER ;; esac
for s in $servers; do
	case $s in sipwarden | kamailio | kamailio-sqlite) ;; *) echo "--server: sipwarden, kamailio, kamailio-sqlite, both or all" >&2; exit 2 ;; esac
done
case $CLIENT in
regload) ;;
sipp)
	command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }
	[ "$ALGORITHMS" = MD5 ] || { echo "SIPp 3.6 computes MD5 digests only: use --algorithms MD5" >&2; exit 2; }
	;;
*) echo "--client: regload or sipp" >&2; exit 2 ;;
esac
if [[ " $servers " == *" kamailio"* ]]; then
	command -v kamailio >/dev/null || { echo "kamailio missing: apt-get install kamailio" >&2; exit 1; }
fi
if [[ " $servers " == *" kamailio-sqlite "* ]]; then
	command -v sqlite3 >/dev/null || { echo "sqlite3 missing: apt-get install sqlite3" >&2; exit 1; }
	[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ] || { echo "db_sqlite missing: apt-get install kamailio-sqlite-modules" >&2; exit 1; }
fi

PROXY_PORT=15060 ADMIN_PORT=18080
REALM=phones.example.test PASSWORD='Kq7!vzBench#Lm2xR9' FIRST=2000
CLIENT_IP=127.0.0.46
WORK=$(mktemp -d /tmp/sipwarden-regbench.XXXXXX)
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
trap "exit 1" INT TERM

SIPWARDEN_BIN=${SIPWARDEN_BIN:-$WORK/sipwarden}
[ -x "$SIPWARDEN_BIN" ] || go build -o "$SIPWARDEN_BIN" ./cmd/sipwarden
REGLOAD_BIN=${REGLOAD_BIN:-$WORK/regload}
[ -x "$REGLOAD_BIN" ] || go build -o "$REGLOAD_BIN" ./bench/regload

. bench/lib.sh # cpu_ticks (the script runs from the repository root)

start_server() { # $1 = sipwarden|kamailio|kamailio-sqlite, $2 = algorithm; sets SERVER_PID
	local hash=md5
	[ "$2" = SHA-256 ] && hash=sha256
	case $1 in
	kamailio | kamailio-sqlite)
		local db=$WORK/location.db define=()
		rm -f "$db" "$db"-*
		if [ "$1" = kamailio-sqlite ]; then
			cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/usrloc-create.sql | sqlite3 "$db"
			define=(-A WITH_SQLITE)
		fi
		sed -e "s/PROXY_PORT/$PROXY_PORT/" -e "s/CHILDREN/$CHILDREN/" -e "s/NACCOUNTS/$ACCOUNTS/" \
			-e "s/PASSWORD/$PASSWORD/" -e "s/\"ALGO\"/\"$2\"/" -e "s/s\.HASH/s.$hash/" -e "s/REALM/$REALM/g" \
			-e "s#DBFILE#$db#g" bench/kamailio-register.cfg >"$WORK/kamailio.cfg"
		kamailio -f "$WORK/kamailio.cfg" "${define[@]}" -DD -E -m 512 -M 32 -w "$WORK" >"$WORK/$1.log" 2>&1 &
		SERVER_PID=$!
		;;
	sipwarden)
		rm -rf "$WORK/data" && mkdir -p "$WORK/data"
		"$REGLOAD_BIN" -print-accounts sipwarden -algorithm "$2" -accounts "$ACCOUNTS" -first $FIRST \
			-realm $REALM -password "$PASSWORD" >"$WORK/accounts-$2.yaml"
		sed -e "s/PROXY_PORT/$PROXY_PORT/" -e "s/ADMIN_PORT/$ADMIN_PORT/" -e "s#STORAGE#$WORK/data#" \
			-e "s/ALGO/$2/" -e "s/REALM/$REALM/" -e "/^ACCOUNTS$/{r $WORK/accounts-$2.yaml" -e "d}" \
			bench/sipwarden-register.yaml >"$WORK/sipwarden.yaml"
		"$SIPWARDEN_BIN" serve --config "$WORK/sipwarden.yaml" >"$WORK/sipwarden.log" 2>&1 &
		SERVER_PID=$!
		;;
	esac
	PIDS+=("$SERVER_PID")
	# sipwarden checks every account's HA1 against the common passwords at load
	# (seconds for 10,000 accounts): wait for its admin listener, which comes up
	# after the configuration is loaded, so that this CPU is not counted.
	if [ "$1" = sipwarden ]; then
		local i
		for ((i = 0; i < 300; i++)); do
			curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz" && break
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
	fi
	sleep 1
	kill -0 "$SERVER_PID" 2>/dev/null || { echo "$1 did not start:" >&2; tail -20 "$WORK/$1.log" >&2; kill $$; exit 1; }
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	pkill -f "kamailio -f $WORK" 2>/dev/null || true
	sleep 0.5
}

# client RATE N ALGORITHM: prints "ok failed"
client() {
	local rate=$1 n=$2 alg=$3 limit=$(($2 / $1 + 30))
	case $CLIENT in
	regload)
		local line
		line=$(timeout $((limit + 10)) "$REGLOAD_BIN" -dst 127.0.0.1:$PROXY_PORT -src $CLIENT_IP -algorithm "$alg" \
			-rate "$rate" -n "$n" -accounts "$ACCOUNTS" -first $FIRST -realm $REALM -password "$PASSWORD" \
			-timeout 8s -max-time ${limit}s 2>>"$WORK/client.err" || true)
		echo "$line" >>"$WORK/client.log"
		awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } } END { print v["ok"] + 0, v["failed"] + 0 }' <<<"$line"
		;;
	sipp)
		local inf=$WORK/users.csv screen=$WORK/screen.txt i
		if [ ! -f "$inf" ]; then
			{
				echo SEQUENTIAL
				for ((i = 0; i < ACCOUNTS; i++)); do
					# SIPp puts the remote address:port in the digest uri: the Request-URI must be it too
					echo "$((FIRST + i));[authentication username=$((FIRST + i)) password=$PASSWORD];127.0.0.1:$PROXY_PORT"
				done
			} >"$inf"
		fi
		rm -f "$screen"
		timeout $((limit + 10)) sipp -sf test/testbed/scenarios/register_digest.xml -inf "$inf" -i $CLIENT_IP -p 0 \
			-r "$rate" -m "$n" -l $((rate * 4)) -nostdin -timeout ${limit}s -recv_timeout 8000 \
			-trace_screen -screen_file "$screen" 127.0.0.1:$PROXY_PORT >/dev/null 2>&1 || true
		local ok failed
		ok=$(grep -E 'Successful call' "$screen" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$3); print $3}' | tail -1)
		failed=$(grep -E 'Failed call' "$screen" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$3); print $3}' | tail -1)
		echo "${ok:-0} ${failed:-0}"
		;;
	esac
}

# run_once SERVER ALGORITHM RATE N: prints "ok failed achieved cpu_us_per_reg cpu_percent"
run_once() {
	local server=$1 alg=$2 rate=$3 n=$4 before after t0 t1 ok failed
	start_server "$server" "$alg"
	before=$(cpu_ticks "$SERVER_PID")
	t0=$(date +%s.%N)
	read -r ok failed < <(client "$rate" "$n" "$alg")
	t1=$(date +%s.%N)
	# sipwarden writes the changed bindings to SQLite every second: count the
	# last write too (both servers are measured over the same extra 1.2 s)
	sleep 1.2
	after=$(cpu_ticks "$SERVER_PID")
	stop_server
	awk -v ok="$ok" -v f="$failed" -v b="$before" -v a="$after" -v tick="$TICK" -v t0="$t0" -v t1="$t1" 'BEGIN {
		cpu = (a - b) / tick
		printf "%d %d %.0f %.1f %.0f\n", ok, f, ok / (t1 - t0), (ok > 0 ? cpu / ok * 1e6 : 0), cpu / (t1 - t0) * 100 }'
}

emit() {
	echo "$1"
	if [ -n "$OUT" ]; then echo "$1" >>"$OUT"; fi
	return 0
}

RAW=$WORK/raw.txt
: >"$RAW"
emit "client: $CLIENT; $ACCOUNTS accounts; ${SECONDS_PER_RUN} s per run; $REPEAT repeats; Kamailio with $CHILDREN UDP workers"
emit "| repeat | server | algorithm | REGISTERs/s asked | registrations | successful | failed | achieved/s | server CPU µs/registration | server CPU |"
emit "|---|---|---|---|---|---|---|---|---|---|"
for ((rep = 1; rep <= REPEAT; rep++)); do
	order=$servers
	((rep % 2 == 0)) && order=$(tr ' ' '\n' <<<"$servers" | tac | tr '\n' ' ')
	for rate in $RATES; do
		for alg in $ALGORITHMS; do
			for server in $order; do
				n=$((rate * SECONDS_PER_RUN))
				read -r ok failed ach us pct < <(run_once "$server" "$alg" "$rate" "$n")
				echo "$server $alg $rate $n $ok $failed $ach $us $pct" >>"$RAW"
				emit "| $rep | $server | $alg | $rate | $n | $ok | $failed | $ach | $us | $pct % |"
			done
		done
	done
done

# medians over the repeats, and sipwarden ÷ Kamailio for the CPU per registration
emit ""
emit "Medians over $REPEAT repeats:"
emit ""
emit "| algorithm | REGISTERs/s asked | server | successful | failed | achieved/s | server CPU µs/registration | server CPU | CPU/registration sipwarden ÷ this server |"
emit "|---|---|---|---|---|---|---|---|---|"
awk '
function median(s,   a, n) { n = split(s, a, " "); asort(a); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{
	k = $2 SUBSEP $3 SUBSEP $1
	if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
	ok[k] = ok[k] " " $5; failed[k] = failed[k] " " $6; ach[k] = ach[k] " " $7; us[k] = us[k] " " $8; pct[k] = pct[k] " " $9
}
END {
	for (i = 1; i <= nk; i++) { k = keys[i]; mus[k] = median(us[k]) }
	# order: algorithm, rate, server as first seen
	for (i = 1; i <= nk; i++) {
		k = keys[i]; split(k, p, SUBSEP)
		ratio = ""; sw = p[1] SUBSEP p[2] SUBSEP "sipwarden"
		if (p[3] != "sipwarden" && (sw in mus) && mus[k] > 0)
			ratio = sprintf("%.2f×", mus[sw] / mus[k])
		printf "%s\t%08d\t%s\t| %s | %d | %s | %d | %d | %d | %.1f | %d %% | %s |\n", p[1], p[2], p[3], p[1], p[2], p[3], median(ok[k]), median(failed[k]), median(ach[k]), mus[k], median(pct[k]), ratio
	}
}' "$RAW" | sort -t $'\t' -k1,1 -k2,2 -k3,3r | cut -f4 | while IFS= read -r line; do emit "$line"; done
