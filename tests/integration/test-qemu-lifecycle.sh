#!/usr/bin/env bash
# Real QEMU boots under TCG, one VM at a time: create -> running with the
# readiness line on the console; stop -> stopped and the process gone; start
# again; pause stops the guest clock (a root disk's ember-rc prints a tick
# every 0.2 s and the console stops growing) and resume restarts it; a
# kill -9 of QEMU -> failed with the signal in the reason while the CID stays
# held until delete.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

ensure_image
start_emberd
import_image mini

note "create, stop, start"
create_booted t1 --image mini --vsock
assert_eq running "$(field t1 .status)" "t1 is running"
pid=$(field t1 .pid)
[[ $pid -gt 0 ]] && kill -0 "$pid" || fail "t1: pid $pid is not a live process"
pass "t1 runs as pid $pid"
grep -q "qemu: t1: .*-accel tcg" "$LOG" || fail "emberd did not log a TCG command line for t1"
pass "QEMU runs under TCG"

ctl vm stop t1 >/dev/null || fail "vm stop t1"
assert_eq stopped "$(field t1 .status)" "t1 is stopped after vm stop"
assert_eq 0 "$(field t1 .pid)" "t1 records no pid"
kill -0 "$pid" 2>/dev/null && fail "QEMU (pid $pid) still exists after vm stop"
pass "QEMU (pid $pid) is gone"
if socat -u OPEN:/dev/null "UNIX-CONNECT:$STATE/vms/t1/qmp.sock" 2>/dev/null; then
	fail "something still answers on t1's QMP socket"
fi
pass "nothing answers on t1's QMP socket"

start_booted t1
assert_eq running "$(field t1 .status)" "t1 runs again after vm start"
pid2=$(field t1 .pid)
[[ $pid2 -gt 0 && $pid2 != "$pid" ]] || fail "t1 restarted with pid '$pid2' (was $pid)"
pass "t1 restarted as a new process ($pid2)"
ctl vm delete --force t1 >/dev/null || fail "vm delete --force t1"
wait_gone "$pid2"
pass "vm delete --force killed the running QEMU"
[[ -e $STATE/vms/t1 ]] && fail "$STATE/vms/t1 still exists after delete"
pass "t1's directory is gone"

note "pause stops the guest clock"
mkdir -p "$T/ticker"
cat >"$T/ticker/ember-rc" <<'EOF'
#!/bin/sh
# Prints a tick with the guest's uptime every 0.2 s, in the background.
cd /
(
	n=0
	while :; do
		n=$((n + 1))
		echo "tick $n $(cut -d' ' -f1 /proc/uptime)"
		sleep 0.2
	done
) </dev/null >/dev/console 2>&1 &
EOF
import_image ticker --rootfs-dir "$T/ticker"
create_booted p1 --image ticker
wait_console p1 0 'tick 3 ' 20 || fail "p1 prints no ticks: $(tail -n 3 "$(console_of p1)")"
pass "p1's ember-rc ticks on the console"
ctl vm pause p1 >/dev/null || fail "vm pause p1"
assert_eq paused "$(field p1 .status)" "p1 is paused"
s1=$(console_size p1)
sleep 1.2	# the measurement window: five ticks would be printed in it
s2=$(console_size p1)
assert_eq "$s1" "$s2" "p1's console does not grow while paused"
ctl vm resume p1 >/dev/null || fail "vm resume p1"
assert_eq running "$(field p1 .status)" "p1 is running after resume"
deadline=$((SECONDS + 10))
while (($(console_size p1) == s2)); do
	((SECONDS < deadline)) || fail "p1's console did not grow within 10 s of resume"
	sleep 0.05
done
pass "p1's console grows again after resume"

note "kill -9 of QEMU"
p1pid=$(field p1 .pid)
ctl vm delete --force p1 >/dev/null || fail "vm delete --force p1"
wait_gone "$p1pid"
create_booted k1 --image mini --vsock
cid=$(field k1 .vsock.guest_cid)
kpid=$(field k1 .pid)
kill -9 "$kpid"
wait_status k1 failed 10
reason=$(field k1 .reason)
grep -qiE 'signal 9|killed' <<<"$reason" || fail "k1's reason does not name the signal: $reason"
pass "k1 failed with reason: ${reason:0:100}"
assert_eq 0 "$(field k1 .pid)" "k1 records no pid"
allocs=$(ctl --json vsock allocations) || fail "vsock allocations"
assert_jq "$allocs" ".allocations[\"$cid\"] == \"k1\"" "k1 still holds CID $cid"
ctl vm delete k1 >/dev/null || fail "vm delete k1 (failed, no process)"
allocs=$(ctl --json vsock allocations) || fail "vsock allocations"
assert_jq "$allocs" ".allocations | has(\"$cid\") | not" "CID $cid is released by delete"

stop_emberd
echo "PASS"
