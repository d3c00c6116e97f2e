#!/usr/bin/env bash
# ember-agent end to end in a real guest: QEMU under TCG boots ember-mini
# (built with this build's ember-agent) and emberd talks to the agent
# through the VM's vsock.sock. Checks create --vsock --wait (returns once
# the agent answers, inspect shows it ready with the guest's info), vm exec
# (both streams, exit status 7, a signal, stdin-free commands running while
# another exec is busy, a timeout that kills the command's process group:
# status 124), vm cp of a 1 MiB binary file in and out (byte-identical,
# mode kept), and a graceful stop through the agent well inside the stop
# timeout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

AGENT=$BUILD/packaging/agent/ember-agent
[[ -x $AGENT ]] || fail "no agent binary at $AGENT"
# ensure_image rebuilds the image when its agent differs from $AGENT (sha256).

start_emberd
ensure_image
import_image mini
KREL=$(jq -r .kernel_release "$IMAGE_DIR/image.json")

note "create --vsock --wait"
ok=
for try in 1 2; do
	t0=$SECONDS
	if out=$(ctl vm create t --image mini --vsock --wait 150 2>&1); then
		ok=1
		break
	fi
	# TCG boots hang now and then (see qemu-lib.sh); one more try.
	echo "RETRY: create --wait failed after $((SECONDS - t0)) s: ${out:0:300}"
	ctl vm delete --force t >/dev/null 2>&1 || true
done
[[ -n $ok ]] || fail "vm create t --vsock --wait failed twice: $out"
elapsed=$((SECONDS - t0))
pass "create --wait returned after $elapsed s"
grep -qa "$READY" "$(console_of t)" || fail "create --wait returned before the guest printed READY"
grep -qa '^ember-agent: listening on vsock port 1024' "$(console_of t)" ||
	fail "no 'listening on vsock port 1024' on the console"
pass "the guest had booted and its agent was listening when create --wait returned"
rec=$(ctl --json vm inspect t)
assert_jq "$rec" '.agent.state == "ready"' "inspect: agent ready"
assert_jq "$rec" ".agent.info.kernel == \"$KREL\" and .agent.info.hostname == \"ember-mini\"" \
	"inspect: the guest's kernel and hostname"
assert_jq "$rec" '.agent.info.cid == .vsock.guest_cid and .agent.info.uptime_s > 0' \
	"inspect: the guest's CID and uptime"

note "vm exec"
rc=0
ctl vm exec t -- sh -c 'echo out; echo err >&2; exit 7' >"$T/out" 2>"$T/err" || rc=$?
assert_eq 7 "$rc" "vm exec exits with the command's status"
assert_eq out "$(cat "$T/out")" "stdout printed"
assert_eq err "$(cat "$T/err")" "stderr printed"
rc=0
ctl vm exec t -- sh -c 'kill -9 $$' 2>/dev/null || rc=$?
assert_eq 137 "$rc" "a command killed by SIGKILL: 128+9"
rc=0
ctl vm exec t -- /no/such/command 2>"$T/err" || rc=$?
assert_eq 1 "$rc" "an unknown command is an error"
grep -q 'cannot run "/no/such/command"' "$T/err" || fail "unknown command: $(cat "$T/err")"
pass "an unknown command is reported as such"

note "an exec does not block other requests"
"$EMBERCTL" --socket "$SOCK" vm exec t -- sleep 8 >/dev/null 2>&1 &
slow=$!
_ember_pids+=("$slow")
t0=$SECONDS
ctl vm exec t -- true || fail "vm exec true while another exec sleeps"
((SECONDS - t0 < 6)) || fail "a quick exec waited $((SECONDS - t0)) s behind a sleeping one"
pass "a quick exec ran while another one slept"
wait_exit "$slow" 60
assert_eq 0 "$EXIT_STATUS" "the sleeping exec finished too"

note "exec timeout"
rc=0
t0=$SECONDS
ctl vm exec t --timeout 3 -- sh -c 'sleep 300 & sleep 300' >/dev/null 2>"$T/err" || rc=$?
assert_eq 124 "$rc" "a command past its timeout: status 124"
grep -q 'timeout' "$T/err" || fail "no timeout note: $(cat "$T/err")"
((SECONDS - t0 < 20)) || fail "the timed-out exec took $((SECONDS - t0)) s"
pass "the timeout note is printed and the exec returned promptly"
r=$(ctl --json vm exec t --timeout 2 -- sleep 30 2>/dev/null || true)
assert_jq "$r" '.timed_out == true and .exit_code == null and .signal == 9' "timed_out in the result"
left=$(ctl vm exec t -- sh -c 'ps -o pid,args | grep -c "[s]leep 300"' || true)
assert_eq 0 "$left" "the timed-out command's background process was killed with its group"

note "vm cp, 1 MiB binary, in and out"
head -c $((1024 * 1024)) /dev/urandom >"$T/blob"
chmod 0640 "$T/blob"
ctl vm cp "$T/blob" t:/tmp/blob || fail "vm cp in"
assert_eq "$(md5sum <"$T/blob" | cut -d' ' -f1)" \
	"$(ctl vm exec t -- sh -c 'md5sum </tmp/blob' | cut -d' ' -f1)" "the guest's copy has the same md5"
assert_eq 640 "$(ctl vm exec t -- stat -c %a /tmp/blob)" "the file's mode was kept"
ctl vm cp t:/tmp/blob "$T/back" || fail "vm cp out"
cmp "$T/blob" "$T/back" || fail "the copy back differs"
pass "1 MiB copied in and out is byte-identical"
printf 'tiny\n' >"$T/tiny"
ctl vm cp "$T/tiny" t:/tmp/ || fail "vm cp into a directory"
assert_eq tiny "$(ctl vm exec t -- cat /tmp/tiny)" "a guest path ending in / names a directory"
: >"$T/empty"
ctl vm cp "$T/empty" t:/tmp/blob || fail "vm cp of an empty file"
assert_eq 0 "$(ctl vm exec t -- stat -c %s /tmp/blob)" "an empty file truncates the target"
rc=0
ctl vm cp t:/no/such/file "$T/nothing" 2>"$T/err" || rc=$?
assert_eq 1 "$rc" "vm cp of a missing guest file fails"
grep -q 'No such file' "$T/err" || fail "missing file: $(cat "$T/err")"
[[ ! -e $T/nothing ]] || fail "a missing guest file left a local file behind"
pass "a missing guest file: a clear error, no local file"

note "graceful stop through the agent"
mark=$(log_mark)
t0=$SECONDS
ctl vm stop t --timeout 60 >/dev/null || fail "vm stop t"
elapsed=$((SECONDS - t0))
assert_eq stopped "$(field t .status)" "t is stopped"
((elapsed < 30)) || fail "the stop took $elapsed s of its 60 s timeout"
pass "stopped in $elapsed s (timeout 60 s)"
log_since "$mark" | grep "vm t: asked its agent to power off" >/dev/null ||
	fail "emberd did not ask the agent to power off"
pass "emberd asked its agent to power off"
if log_since "$mark" | grep "stopping through the backend"; then
	fail "the stop fell back to the backend"
fi
grep -qa 'ember-mini: poweroff' "$(console_of t)" || fail "no 'ember-mini: poweroff' on the console"
pass "the guest powered itself off through ember-shutdown"

note "start --wait, then delete"
ok=
for try in 1 2; do
	if ctl vm start t --wait 150 >/dev/null 2>&1; then
		ok=1
		break
	fi
	echo "RETRY: start --wait failed; forcing a stop"
	ctl vm stop --force t >/dev/null 2>&1 || true
done
[[ -n $ok ]] || fail "vm start t --wait failed twice"
assert_eq hello "$(ctl vm exec t -- echo hello)" "exec after start --wait"
ctl vm delete --force t >/dev/null || fail "vm delete t"
stop_emberd
pass "done"
