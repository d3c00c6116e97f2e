#!/usr/bin/env bash
# Opening a non-root client's paths never holds emberd's event loop. With
# EMBER_TEST_OPEN_AS_DELAY_MS (a test-only setting) each open-as helper
# waits before it opens, standing in for a filesystem that hangs:
#  - while uid 65534's vm.create and image.import wait on their helper,
#    root's daemon.info and vm.list are answered (the create's reply has
#    not come yet, its helper still runs), and then both requests complete
#    as they would have; the name stays taken meanwhile;
#  - past CALLER_OPEN_TIMEOUT_MS (5 s) the request fails with the timeout
#    error naming the path, and nothing is left: no VM, no name, no held
#    quota, and the killed helper is reaped.
# Needs root (setpriv, groupadd); no hypervisor.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

socket_group_setup embo
NOBODY=$(id -un 65534)
mkdir -m 0755 "$T/pub"
head -c 8192 /dev/urandom >"$T/pub/kernel"
chmod 0644 "$T/pub/kernel"
cat >"$T/emberd.yaml" <<EOF2
socket_group: $GROUP
quotas:
  default: { vms: 8, disk: 1G }
EOF2
EMBERD_EXTRA=(--config "$T/emberd.yaml")

req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":${2:-null}}"; }
as_nobody() {
	printf '%s\n' "$1" | timeout 60 setpriv --reuid=65534 --regid=65534 --groups="$GROUP" -- \
		socat -t 50 - "UNIX-CONNECT:$SOCK"
}
# helpers: emberd's children running as uid 65534 (open-as helpers).
helpers() { ps --ppid "$EMBERD_PID" -o uid= 2>/dev/null | grep -c '^ *65534$' || true; }
# wait_helpers N: until emberd has N such children (deadline 20 s).
wait_helpers() {
	local deadline=$((SECONDS + 20))
	while [[ $(helpers) -ne $1 ]]; do
		((SECONDS < deadline)) || fail "emberd has $(helpers) open-as helpers, not $1"
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

note "a slow open does not hold the loop"
export EMBER_TEST_OPEN_AS_DELAY_MS=3000
start_emberd
tb=$(ms)
call_ok daemon.info >/dev/null
baseline=$(($(ms) - tb))
t0=$(ms)
background "$(req vm.create "{\"name\":\"slow\",\"kernel\":\"$T/pub/kernel\",\"start\":false}")" "$T/create.out"
create_pid=$BG_PID
wait_helpers 1
t1=$(ms)
r=$(call_ok daemon.info)
t2=$(ms)
assert_jq "$r" '.pid > 0' "daemon.info is answered while the create's helper waits"
[[ ! -s $T/create.out ]] || fail "the create was answered before daemon.info: $(cat "$T/create.out")"
assert_eq 1 "$(helpers)" "the helper was still at work when daemon.info was answered"
pass "daemon.info took $((t2 - t1)) ms with a 3000 ms open pending ($baseline ms with none)"
r=$(call_ok vm.list)
assert_jq "$r" '.vms | length == 0' "vm.list is answered too (the VM is not listed yet)"
r=$(as_nobody "$(req vm.create '{"name":"slow","start":false}')")
assert_jq "$r" '.error.data.kind == "already_exists"' "the name is taken while its paths are opened"
wait "$create_pid" || fail "the create's client failed"
t3=$(ms)
r=$(cat "$T/create.out")
assert_jq "$r" '.result.name == "slow" and .result.status == "created"' "the create then completes"
((t3 - t0 >= 3000)) || fail "the create came back in $((t3 - t0)) ms, before its helper's delay"
pass "the create took $((t3 - t0)) ms (helper delay 3000 ms)"
[[ -f $STATE/vms/slow/kernel ]] || fail "the VM has no copy of its kernel"
cmp -s "$T/pub/kernel" "$STATE/vms/slow/kernel" || fail "the VM's kernel differs from the file named"
pass "the kernel was copied from the file opened as uid 65534"
wait_helpers 0

background "$(req image.import "{\"name\":\"img\",\"kernel\":\"$T/pub/kernel\",\"initrd\":\"$T/pub/kernel\"}")" "$T/import.out"
import_pid=$BG_PID
wait_helpers 1
r=$(call_ok daemon.info)
[[ ! -s $T/import.out ]] || fail "the import was answered before daemon.info"
pass "daemon.info is answered while an import's helper waits"
r=$(as_nobody "$(req quota.get)")
assert_jq "$r" '.result.use.disk_mib >= 1' "the import in flight holds disk quota ($(jqr "$r" .result.use.disk_mib) MiB)"
wait "$import_pid" || fail "the import's client failed"
r=$(cat "$T/import.out")
assert_jq "$r" '.result.name == "img"' "the import then completes (both paths from one helper)"
cmp -s "$T/pub/kernel" "$STATE/images/img/initrd" || fail "the image's initrd differs from the file named"
pass "kernel and initrd were both copied"

r=$(as_nobody "$(req vm.create "{\"name\":\"bad\",\"kernel\":\"$T/pub/kernel\",\"initrd\":\"/etc/shadow\",\"start\":false}")")
assert_jq "$r" '.error.message == "initrd /etc/shadow: Permission denied"' \
	"the second path's own error comes back ($(jqr "$r" .error.message))"
r=$(as_nobody "$(req vm.create "{\"name\":\"bad\",\"kernel\":\"$T/pub/kernel\",\"initrd\":\"relative\",\"start\":false}")")
assert_jq "$r" '.error.message == "initrd relative: not an absolute path"' "a relative path after an open one"
wait_helpers 0
stop_emberd

note "an open past the deadline"
export EMBER_TEST_OPEN_AS_DELAY_MS=8000
start_emberd
before=$(as_nobody "$(req quota.get)")
t0=$(ms)
background "$(req vm.create "{\"name\":\"hang\",\"kernel\":\"$T/pub/kernel\",\"start\":false}")" "$T/hang.out"
hang_pid=$BG_PID
wait_helpers 1
assert_jq "$(call_ok daemon.info)" '.pid > 0' "daemon.info is answered while the open hangs"
wait "$hang_pid" || fail "the hung create's client failed"
t1=$(ms)
r=$(cat "$T/hang.out")
assert_jq "$r" ".error.data.kind == \"io_error\" and .error.message == \"kernel $T/pub/kernel: opening it took longer than 5 s\"" \
	"the create fails with the timeout error ($(jqr "$r" .error.message))"
pass "it failed after $((t1 - t0)) ms"
wait_helpers 0
pass "the killed helper was reaped"
assert_jq "$(call_ok vm.list)" '[.vms[].name] | index("hang") == null' "no VM \"hang\""
r=$(as_nobody "$(req quota.get)")
assert_eq "$(jqr "$before" .result.use)" "$(jqr "$r" .result.use)" "the quota it held was released"
[[ -z $(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 -name '*hang*') ]] || fail "something of \"hang\" is left in vms/"
pass "nothing of it is left in vms/"
unset EMBER_TEST_OPEN_AS_DELAY_MS
stop_emberd
