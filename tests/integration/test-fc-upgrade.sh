#!/usr/bin/env bash
# An in-place upgrade (emberctl daemon upgrade) drains before it
# re-executes, like a shutdown that keeps its listening socket:
#   - a vm.create still waiting on its open-as helper (a non-root client;
#     EMBER_TEST_OPEN_AS_DELAY_MS holds the helper 3 s) is answered with
#     its VM, not a dropped connection, and the VM is there afterwards;
#   - a `vm create --vsock --wait` whose guest has no agent is answered
#     after the 10 s grace with "emberd is upgrading", its VM running on
#     and adopted by the successor;
#   - an events subscriber gets daemon.shutdown with reason "upgrade";
#   - a client connecting during the drain waits in the socket's backlog
#     and is answered by the successor (same pid: an upgrade is an exec).
# Firecracker double (no guest, no KVM); needs root (setpriv, groupadd).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

GRACE=10	# upgrade.c's UPGRADE_GRACE_S

socket_group_setup embu
mkdir -m 0755 "$T/pub"
printf 'bzImage\n' >"$T/pub/kernel"
chmod 0644 "$T/pub/kernel"
hv=$T/fc-per-vm
cat >"$hv" <<EOF
#!/bin/sh
[ "\$4" = nowait ] && unset FC_DOUBLE_AGENT_PORTS
exec $FC_DOUBLE "\$@"
EOF
chmod +x "$hv"
printf 'socket_group: %s\nfirecracker:\n  binary: %s\n  require_kvm: false\n' "$GROUP" "$hv" >"$CONFIG"

req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":${2:-null}}"; }
as_nobody() {
	printf '%s\n' "$1" | timeout 90 setpriv --reuid=65534 --regid=65534 --groups="$GROUP" -- \
		socat -t 80 - "UNIX-CONNECT:$SOCK"
}
rpc_root() { printf '%s\n' "$1" | timeout 60 socat -t 50 - "UNIX-CONNECT:$SOCK"; }
log_has() { log_since "$mark" | grep -q "$1"; }
helper_pids() { ps --ppid "$EMBERD_PID" -o pid=,uid= 2>/dev/null | awk '$2 == 65534 { print $1 }'; }
has_helper() { [[ -n $(helper_pids) ]]; }

fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024 EMBER_TEST_OPEN_AS_DELAY_MS=3000
pid0=$EMBERD_PID
make_image mini

note "clients in flight when the upgrade begins"
bg events ctl events --json
bg nowait ctl vm create nowait --image mini --vsock --wait 600
wait_until 30 "nowait is running" has_status nowait running
wait_until 10 "the subscriber sees nowait" grep -q nowait "$T/out.events"
bg create as_nobody "$(req vm.create "{\"name\":\"slow\",\"kernel\":\"$T/pub/kernel\",\"start\":false}")"
wait_until 20 "the create's open-as helper runs" has_helper
mark=$(log_mark)
t0=$SECONDS
ctl daemon upgrade >/dev/null || fail "emberctl daemon upgrade"
wait_until 5 "emberd drains" log_has 'upgrade: no longer reading requests'
bg late rpc_root "$(req daemon.info)"

note "answers"
wait_exit "${BG[create]}" 30
assert_jq "$(cat "$T/out.create")" '.result.name == "slow"' \
	"the create waiting on its helper is answered with its VM ($(head -c 120 "$T/out.create"))"
wait_exit "${BG[nowait]}" $((GRACE + 20))
[[ $EXIT_STATUS -ne 0 ]] || fail "the --wait create succeeded without an agent: $(cat "$T/out.nowait")"
grep -q 'emberd is upgrading' "$T/out.nowait" || fail "the --wait create's answer: $(cat "$T/out.nowait")"
pass "the --wait create is answered after the grace: $(head -c 160 "$T/out.nowait" | tr '\n' ' ')"
((SECONDS - t0 >= GRACE - 1)) || fail "the --wait create was answered before the grace ended"
wait_exit "${BG[events]}" 30
grep -q 'daemon.shutdown' "$T/out.events" || fail "no daemon.shutdown event: $(tail -c 300 "$T/out.events")"
grep 'daemon.shutdown' "$T/out.events" | grep -q '"upgrade"' ||
	fail "daemon.shutdown does not say upgrade: $(grep daemon.shutdown "$T/out.events")"
pass "the subscriber got daemon.shutdown (reason upgrade) and its stream ended"
wait_exit "${BG[late]}" 30
[[ $EXIT_STATUS -eq 0 ]] || fail "the client that connected during the drain failed: $(cat "$T/out.late")"
assert_jq "$(cat "$T/out.late")" ".result.pid == $pid0" \
	"a client connecting during the drain is answered by the successor (pid $pid0)"
log_has 'upgrade: executing' || fail "no 'upgrade: executing' in the log"
log_has 'upgrade: all requests answered' || fail "the drain did not complete before the exec"

note "after the upgrade"
assert_jq "$(inspect slow)" '.status == "created"' "the VM created across the upgrade is there"
assert_jq "$(inspect nowait)" '.status == "running"' "the VM whose --wait was cut is running, adopted"
ctl vm delete nowait --force >/dev/null
ctl vm delete slow >/dev/null
stop_emberd
