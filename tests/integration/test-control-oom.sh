#!/usr/bin/env bash
# emberd out of memory (issue 12: no fatal() on resource exhaustion). A
# preloaded library (tests/fakes/malloc-fail.c) makes every Nth allocation
# of emberd fail while clients create, start, inspect, list, stop and
# delete Firecracker VMs (fc-double), singly and in batches. Every request
# must end, with a reply (a result or an error) or with the connection
# closed, never by waiting; emberd must keep running and, once memory is
# back, serve as before: each VM it lists can be inspected and deleted,
# nothing is left in the state directory, and a restart finds no VM and no
# CID in use. A second part starts, stops and deletes VMs under a sweep of
# failure spacings (every step of a start meets a failure in some run).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

SHIM=$BUILD/tests/fakes/malloc-fail.so
if grep -q '^EMBER_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt"; then
	echo "SKIP: the malloc-failing library cannot replace ASan's allocator"
	exit 77
fi
[[ -f $SHIM ]] || fail "$SHIM not built"
FAILCTL=$T/malloc-fail
head -c 4096 /dev/zero >"$FAILCTL"

# fail_every N: every Nth allocation of emberd fails from now on (0: none).
fail_every() {
	local n=$1
	printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((n & 255)) $(((n >> 8) & 255)) \
	    $(((n >> 16) & 255)) $(((n >> 24) & 255)))" |
		dd of="$FAILCTL" bs=1 seek=0 conv=notrunc status=none
}
# failures: how many allocations have failed so far.
failures() { od -An -tu4 -j4 -N4 "$FAILCTL" | tr -d ' '; }

fc_start_emberd LD_PRELOAD="$SHIM" EMBER_TEST_MALLOC_FAIL="$FAILCTL"
pid=$EMBERD_PID
make_image mini

answered=0 errors=0 closed=0
# ask LINE: one request line; counts how it ended; fails when it hung.
ask() {
	local r rc=0
	# Not rpc_to: its socat gives up (status 0, no reply) before timeout
	# fires, so a hang would pass for a closed connection. Here emberd's
	# own close ends socat, and a hang ends in timeout's 124.
	r=$(printf '%s\n' "$1" | timeout 20 socat -t 30 - "UNIX-CONNECT:$SOCK" 2>/dev/null) || rc=$?
	((rc != 124)) || fail "a request hung while allocations failed: $1"
	if [[ -z $r ]]; then
		closed=$((closed + 1))
	elif jq -e 'if type == "array" then all(has("result") or has("error")) else has("result") or has("error") end' \
	    <<<"$r" >/dev/null 2>&1; then
		answered=$((answered + 1))
		grep -q '"error"' <<<"$r" && errors=$((errors + 1))
	else
		fail "a reply that is neither a result nor an error: $r"
	fi
	return 0
}
req() { printf '{"jsonrpc":"2.0","id":%d,"method":"%s","params":%s}' "$1" "$2" "${3:-null}"; }

for every in 5 17 61 499 2003; do
	note "every ${every}th allocation fails"
	fail_every "$every"
	for i in $(seq 1 12); do
		n=oom-$every-$i
		vsock=false start=false
		((i % 2 == 0)) && vsock=true
		((i % 3 == 0)) && start=true
		ask "$(req 1 vm.create "{\"name\":\"$n\",\"image\":\"mini\",\"backend\":\"firecracker\",\"vsock\":$vsock,\"start\":$start}")"
		ask "$(req 2 vm.inspect "{\"name\":\"$n\"}")"
		ask "$(req 3 vm.list)"
		((i % 4 == 0)) && ask "$(req 4 vm.stop "{\"name\":\"$n\",\"force\":true}")"
		((i % 3 == 1)) && ask "$(req 5 vm.delete "{\"name\":\"$n\",\"force\":true}")"
		ask "$(req 6 daemon.info)"
	done
	batch="["
	for i in $(seq 1 20); do
		batch+="$(req "$i" vm.create "{\"name\":\"oomb-$every-$i\",\"image\":\"mini\",\"backend\":\"firecracker\",\"start\":false}"),"
	done
	ask "${batch%,}]"
	ask "$(req 7 image.list)"
	alive "$pid" || fail "emberd died while every ${every}th allocation failed"
	echo "    so far: $answered answered ($errors with errors), $closed closed"
done
# Starts under a sweep of failure spacings, so that an allocation on every
# step of a Firecracker start (spawn, each API request, libcurl's own) fails
# in one run or another: a start whose request curl lost once hung forever.
note "starts while every Nth allocation fails, N = 150, 157, ... 451"
for every in $(seq 150 7 451); do
	fail_every "$every"
	for i in 1 2; do
		n=oom-start-$every-$i
		ask "$(req 1 vm.create "{\"name\":\"$n\",\"image\":\"mini\",\"backend\":\"firecracker\",\"vsock\":$( ((i == 2)) && echo true || echo false),\"start\":true}")"
		ask "$(req 2 vm.stop "{\"name\":\"$n\",\"force\":true}")"
		ask "$(req 3 vm.delete "{\"name\":\"$n\",\"force\":true}")"
	done
	alive "$pid" || fail "emberd died while every ${every}th allocation failed"
done
echo "    so far: $answered answered ($errors with errors), $closed closed"
fail_every 0
n_failed=$(failures)
((n_failed > 0)) || fail "no allocation failed: the library did not take effect"
pass "$((answered + closed)) requests ended while $n_failed allocations failed ($answered answered, $errors of them with errors; $closed connections closed); emberd (pid $pid) runs on"

note "memory back: everything listed can be inspected and deleted"
[[ $(answering_pid) == "$pid" ]] || fail "emberd (pid $pid) does not answer daemon.info"
names=$(call_ok vm.list | jq -r '.vms[].name')
for n in $names; do
	call_ok vm.inspect "{\"name\":\"$n\"}" >/dev/null
	call_ok vm.delete "{\"name\":\"$n\",\"force\":true}" >/dev/null
done
assert_eq "[]" "$(call_ok vm.list | jq -c .vms)" "no VM is left"
pass "$(wc -w <<<"$names") VMs left by the storm inspected and deleted"

note "a clean stop and a restart find nothing left over"
stop_emberd
leftover=$(find "$STATE/vms" -mindepth 1 -maxdepth 1 2>/dev/null | grep -v '/\.' || true)
[[ -z $leftover ]] || fail "left in $STATE/vms: $leftover"
fc_start_emberd
assert_eq "[]" "$(call_ok vm.list | jq -c .vms)" "the restarted emberd lists no VM"
assert_jq "$(jq -c . "$STATE/vsock/cids.json")" '(.allocations // {}) | length == 0' "no CID is held"
for p in $(procs_under "$STATE/vms/"); do
	fail "a hypervisor outlived its VM: $(tr '\0' ' ' <"/proc/$p/cmdline")"
done
pass "state directory, CID table and processes are clean"
