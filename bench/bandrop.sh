#!/usr/bin/env bash
# How fast is the traffic of a banned source dropped? A flooder sends INVITEs
# as fast as it can from one banned address (127.0.0.9) for DUR seconds, in a
# network namespace of its own (clean UDP counters), to:
#   gate      sipwarden, the ban enforced by its pre-parse gate (userspace)
#   nft       sipwarden with firewall.nftables: the ban mirrored into the kernel
#   kamailio  Kamailio with pike + an htable ban (bench/kamailio-bandrop.cfg)
# Each victim first bans the flooder itself (a short warm-up flood at 1,000/s
# trips sipwarden's unknown-source probe rule and Kamailio's pike). Printed per
# victim: datagrams sent/s, dropped in the kernel by nftables/s, delivered to
# the victim's socket/s (its sustained drop rate when the socket overflowed),
# socket overflows/s, and the victim's CPU time per delivered datagram.
#
#   sudo bench/bandrop.sh [gate|nft|kamailio ...]      DUR=10 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
MODES=("$@")
((${#MODES[@]})) || MODES=(gate nft kamailio)
[ "$(id -u)" = 0 ] || { echo "bandrop: needs root (network namespace, nftables)" >&2; exit 1; }
for tool in ip nft kamailio; do
	command -v $tool >/dev/null || { echo "bandrop: $tool missing (apt-get install iproute2 nftables kamailio)" >&2; exit 1; }
done

NS=swbd-$$
WORK=$(mktemp -d /tmp/sipwarden-bandrop.XXXXXX)
TICK=$(getconf CLK_TCK)
VICTIM=""
cleanup() {
	[ -n "$VICTIM" ] && kill "$VICTIM" 2>/dev/null || true
	pkill -f "kamailio -f $WORK" 2>/dev/null || true
	sleep 0.3
	pkill -9 -f "kamailio -f $WORK" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

go build -o "$WORK/sipwarden" ./cmd/sipwarden
go build -o "$WORK/flood" ./bench/flood

. bench/lib.sh # cpu_ticks (the script runs from the repository root)
# udp_counters: InDatagrams RcvbufErrors of the namespace
udp_counters() { in_ns awk '/^Udp:/ && ++n == 2 {print $2, $6}' /proc/net/snmp; }
# nft_dropped: packets counted by the mirror's drop rules (0 without the table)
nft_dropped() {
	{ in_ns nft list table inet sipwarden_bans 2>/dev/null || true; } | awk '/counter packets/ {for (i = 1; i <= NF; i++) if ($i == "packets") s += $(i + 1)} END {print s + 0}'
}

sipwarden_config() { # $1: true|false (firewall.nftables)
	cat <<YAML
listen: [udp://127.0.0.1:15060]
storage: {path: $WORK/data-$1}
log: {level: warn}
unknown_sources: drop
firewall: {nftables: $1}
upstreams:
  - {name: pbx, targets: [udp://127.0.0.3:15080]}
trunks:
  - {name: acme, auth: ip, allow: [127.0.0.2/32], upstream: pbx, targets: [udp://127.0.0.2:15070]}
YAML
}

printf '%-9s %12s %12s %12s %12s %10s %12s\n' victim sent/s nft-drop/s delivered/s overflow/s cpu-s cpu-us/pkt
for mode in "${MODES[@]}"; do
	case $mode in
	gate | nft)
		nft=false
		[ "$mode" = nft ] && nft=true
		sipwarden_config $nft >"$WORK/$mode.yaml"
		ip netns exec "$NS" "$WORK/sipwarden" serve --config "$WORK/$mode.yaml" 2>"$WORK/$mode.log" &
		VICTIM=$!
		;;
	kamailio)
		cp bench/kamailio-bandrop.cfg "$WORK/kamailio.cfg"
		ip netns exec "$NS" kamailio -f "$WORK/kamailio.cfg" -DD -E -m 256 -M 32 -A PROXY_PORT=15060 -A CHILDREN=2 >"$WORK/kamailio.log" 2>&1 &
		VICTIM=$!
		;;
	*) echo "unknown victim $mode" >&2; exit 2 ;;
	esac
	sleep 1.5
	kill -0 "$VICTIM" 2>/dev/null || { echo "$mode did not start:" >&2; cat "$WORK/$mode.log" >&2; exit 1; }
	in_ns "$WORK/flood" -src 127.0.0.9 -dst 127.0.0.1:15060 -for 2s -rate 1000 -senders 1 >/dev/null
	sleep 0.5
	read -r in0 ovf0 < <(udp_counters)
	nft0=$(nft_dropped)
	cpu0=$(cpu_ticks "$VICTIM")
	sent=$(in_ns "$WORK/flood" -src 127.0.0.9 -dst 127.0.0.1:15060 -for "${DUR}s" -senders 2)
	sleep 1
	read -r in1 ovf1 < <(udp_counters)
	nft1=$(nft_dropped)
	cpu1=$(cpu_ticks "$VICTIM")
	kill "$VICTIM" 2>/dev/null || true
	wait "$VICTIM" 2>/dev/null || true
	VICTIM=""
	awk -v m="$mode" -v d="$DUR" -v s="$sent" -v nd=$((nft1 - nft0)) -v dl=$((in1 - in0)) -v o=$((ovf1 - ovf0)) \
		-v c=$((cpu1 - cpu0)) -v tick="$TICK" 'BEGIN {
		cs = c / tick
		printf "%-9s %12.0f %12.0f %12.0f %12.0f %10.2f %12.2f\n", m, s / d, nd / d, dl / d, o / d, cs, (dl > 0 ? cs * 1e6 / dl : 0)
	}'
done
