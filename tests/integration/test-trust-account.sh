#!/usr/bin/env bash
# A non-root client's account (its passwd entry, which gives a Firecracker
# emberd runs as that client its primary group) is looked up off emberd's
# event loop, once per uid, when the client connects. With
# EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS (a test-only setting) each lookup
# helper waits first, standing in for an LDAP or sssd server that hangs:
#  - while uid 65534's first request waits on its lookup, root's vm.inspect
#    and daemon.info are answered; a second connection of the same uid
#    joins the lookup (one helper); both are then served, and the next
#    connection does not wait (the answer is kept);
#  - past CALLER_ACCOUNT_TIMEOUT_MS (5 s) the helper is killed and reaped,
#    the log says which uid's lookup hung, and the connection is served;
#    the failure is kept a minute, so the next connection does not wait.
# Needs root (setpriv, groupadd); no hypervisor.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

socket_group_setup emba
cat >"$T/emberd.yaml" <<EOF2
socket_group: $GROUP
EOF2
EMBERD_EXTRA=(--config "$T/emberd.yaml")

req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":${2:-null}}"; }
as_nobody() {
	printf '%s\n' "$1" | timeout 60 setpriv --reuid=65534 --regid=65534 --groups="$GROUP" -- \
		socat -t 50 - "UNIX-CONNECT:$SOCK"
}
# children: emberd's child processes (no VM runs here: lookup helpers only).
children() { ps --ppid "$EMBERD_PID" -o pid= 2>/dev/null | wc -l; }
# wait_children N: until emberd has N children (deadline 20 s).
wait_children() {
	local deadline=$((SECONDS + 20))
	while [[ $(children) -ne $1 ]]; do
		((SECONDS < deadline)) || fail "emberd has $(children) children, not $1"
		sleep 0.02	# poll interval, not synchronisation
	done
}
ms() { date +%s%3N; }
# background REQUEST OUT: as_nobody REQUEST > OUT in the background; BG_PID.
background() {
	as_nobody "$1" >"$2" &
	BG_PID=$!
	_ember_pids+=("$BG_PID")
}

note "a slow account lookup holds only its own client"
export EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS=3000
start_emberd
call_ok vm.create '{"name":"rootvm","start":false}' >/dev/null
t0=$(ms)
background "$(req vm.list)" "$T/list1.out"
list1=$BG_PID
wait_children 1
t1=$(ms)
r=$(call_ok vm.inspect '{"name":"rootvm"}')
t2=$(ms)
assert_jq "$r" '.name == "rootvm"' "root's vm.inspect is answered while uid 65534's lookup waits"
[[ ! -s $T/list1.out ]] || fail "uid 65534 was answered before its lookup: $(cat "$T/list1.out")"
assert_eq 1 "$(children)" "the lookup helper was still at work when vm.inspect was answered"
pass "vm.inspect took $((t2 - t1)) ms with a 3000 ms account lookup pending"
assert_jq "$(call_ok daemon.info)" '.pid > 0' "daemon.info is answered too"
background "$(req vm.list)" "$T/list2.out"
list2=$BG_PID
deadline=$((SECONDS + 20))
until [[ $(jqr "$(call_ok quota.get '{"uid":65534}')" .use.connections) -eq 2 ]]; do
	((SECONDS < deadline)) || fail "emberd never counted uid 65534's second connection"
	sleep 0.02	# poll interval, not synchronisation
done
[[ ! -s $T/list1.out ]] || fail "uid 65534 was answered before its lookup ended"
assert_eq 1 "$(children)" "a second connection of the same uid joins the lookup (one helper)"
wait "$list1" || fail "uid 65534's first client failed"
wait "$list2" || fail "uid 65534's second client failed"
t3=$(ms)
for out in "$T/list1.out" "$T/list2.out"; do
	assert_jq "$(cat "$out")" '.result.vms | length == 0' \
		"uid 65534 is then served (and sees none of root's VMs)"
done
((t3 - t0 >= 3000)) || fail "uid 65534 was answered in $((t3 - t0)) ms, before its lookup's delay"
pass "uid 65534 was answered after $((t3 - t0)) ms (lookup delay 3000 ms)"
wait_children 0
pass "the lookup helper was reaped"
t4=$(ms)
r=$(as_nobody "$(req vm.list)")
t5=$(ms)
assert_jq "$r" '.result.vms | length == 0' "a later connection of uid 65534 is served"
((t5 - t4 < 3000)) || fail "a later connection waited $((t5 - t4)) ms: the account was looked up again"
pass "it did not wait for a lookup ($((t5 - t4)) ms): the answer is kept"
assert_eq 0 "$(children)" "no lookup helper was started for it"
stop_emberd

note "a lookup past the deadline"
export EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS=8000
start_emberd
mark=$(log_mark)
t0=$(ms)
background "$(req vm.list)" "$T/hang.out"
hang=$BG_PID
wait_children 1
assert_jq "$(call_ok daemon.info)" '.pid > 0' "daemon.info is answered while the lookup hangs"
wait "$hang" || fail "the hung lookup's client failed"
t1=$(ms)
assert_jq "$(cat "$T/hang.out")" '.result.vms | length == 0' "the client is served after the deadline"
((t1 - t0 >= 5000 && t1 - t0 < 8000)) ||
	fail "it was answered after $((t1 - t0)) ms, not between the 5 s deadline and the 8 s delay"
pass "it was answered after $((t1 - t0)) ms"
log_since "$mark" | grep -q 'uid 65534: looking up its passwd entry took longer than 5 s' ||
	fail "the log does not say uid 65534's lookup timed out"
pass "the log names the uid whose lookup hung"
wait_children 0
pass "the killed helper was reaped"
t2=$(ms)
r=$(as_nobody "$(req vm.list)")
t3=$(ms)
assert_jq "$r" '.result.vms | length == 0' "the next connection of uid 65534 is served"
((t3 - t2 < 5000)) || fail "the next connection waited $((t3 - t2)) ms for another lookup"
pass "it did not wait for another lookup ($((t3 - t2)) ms)"
assert_eq 0 "$(children)" "no lookup helper was started for it"
unset EMBER_TEST_ACCOUNT_LOOKUP_DELAY_MS
stop_emberd
