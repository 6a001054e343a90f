#!/usr/bin/env bash
# The long form of the attack scenario of test/e2e (TestUnderAttack): legitimate
# calls from a trunk while strangers flood INVITE and REGISTER and a scanner
# sweeps. Defaults: 6,000 calls at 100 calls/s (60 s) under 20 attackers at
# 2,000 messages/s each (40,000 messages/s). Loopback only, bounded in time.
#
#   bench/attack.sh [CALLS] [CPS] [ATTACKERS] [PPS_PER_ATTACKER]
set -euo pipefail
cd "$(dirname "$0")/.."
export SIPWARDEN_ATTACK_CALLS=${1:-6000} SIPWARDEN_ATTACK_CPS=${2:-100}
export SIPWARDEN_ATTACKERS=${3:-20} SIPWARDEN_ATTACK_PPS=${4:-2000}
timeout $((SIPWARDEN_ATTACK_CALLS / SIPWARDEN_ATTACK_CPS + 300)) \
	go test -count=1 -v -run '^TestUnderAttack$' -timeout 30m ./test/e2e/ | grep -E 'attack:|--- |FAIL|ok'
