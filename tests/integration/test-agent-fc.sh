#!/usr/bin/env bash
# emberd's agent client against the Firecracker double: fc-double's vsock
# socket answers on port 1024 as a scripted ember-agent
# (FC_DOUBLE_AGENT_PORTS), so the host path is the same one a real guest
# sees. Checks create --vsock --wait, the agent's state and info in inspect,
# vm exec's canned output and exit status, start --wait after a stop, a
# stop that goes through the agent's poweroff (no SendCtrlAltDel sent), and
# the errors for a VM without vsock.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024
make_image mini

note "create --vsock --wait"
out=$(timeout 60 "$EMBERCTL" --socket "$SOCK" vm create a --image mini --vsock --wait 30) ||
	fail "vm create a --vsock --wait: $out"
assert_eq "a: created, running (cid $(inspect a | jq -r .vsock.guest_cid))" "$out" "create --wait confirms"
rec=$(inspect a)
assert_jq "$rec" '.agent.state == "ready"' "inspect: agent ready right after create --wait"
assert_jq "$rec" '.agent.info.kernel == "fc-double" and .agent.info.hostname == "fc-double"' \
	"inspect: the agent's info"
assert_jq "$rec" '.agent.info.cid == .vsock.guest_cid' "inspect: the agent reports the VM's CID"

note "vm exec"
out=$(ctl vm exec a -- echo hello "big world") || fail "vm exec: status $?"
assert_eq "echo hello big world" "$out" "vm exec prints the (canned) stdout"
r=$(call_ok vm.exec '{"name":"a","argv":["true"],"timeout_s":5}')
assert_jq "$r" '.exit_code == 0 and .signal == null and .timed_out == false and .stderr == ""' \
	"vm.exec result shape"
out=$(ctl --json vm exec a -- ls /) || fail "vm exec --json"
assert_jq "$out" '.stdout == "bHMgLw=="' "vm exec --json prints the raw result"

note "stop through the agent"
mark=$(log_mark)
ctl vm stop a >/dev/null || fail "vm stop a"
wait_status a stopped 10
log_since "$mark" | grep "vm a: asked its agent to power off" >/dev/null ||
	fail "emberd did not ask the agent to power off"
pass "emberd asked the agent to power off"
if grep -q SendCtrlAltDel "$(reqlog a)"; then
	fail "SendCtrlAltDel was sent although the agent powered off"
fi
pass "no SendCtrlAltDel: the guest powered itself off"

note "start --wait"
ctl vm start a --wait 30 >/dev/null || fail "vm start a --wait 30"
assert_jq "$(inspect a)" '.status == "running" and .agent.state == "ready"' "agent ready after start --wait"
out=$(ctl vm exec a -- uname) || fail "vm exec after restart"
assert_eq "uname" "$out" "vm exec after restart"

note "errors"
ctl vm create plain --image mini --no-vsock >/dev/null || fail "vm create plain"
if out=$(ctl vm exec plain -- true 2>&1); then fail "exec without vsock succeeded"; fi
[[ $out == *"no vsock device"* ]] || fail "exec without vsock: $out"
pass "exec on a VM without vsock: a clear error"
if out=$(ctl vm create nv --image mini --no-vsock --wait 2>&1); then fail "--wait without vsock succeeded"; fi
[[ $out == *"wait needs vsock"* ]] || fail "--wait without vsock: $out"
[[ $(call vm.inspect '{"name":"nv"}' | jq -r '.error.message // empty') != "" ]] ||
	fail "create --wait without vsock left a VM behind"
pass "create --wait without vsock: a clear error, nothing created"
if out=$(ctl vm start plain --wait 2>&1); then fail "start --wait without vsock succeeded"; fi
[[ $out == *"wait needs vsock"* ]] || fail "start --wait without vsock: $out"
pass "start --wait without vsock: refused"
rc=0
ctl vm start plain --wait 5000 >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "--wait beyond 3600 s is a usage error"
if out=$(ctl vm cp /etc/hostname a:relative 2>&1); then fail "cp to a relative path succeeded"; fi
[[ $out == *"must be absolute"* ]] || fail "cp relative: $out"
if out=$(ctl vm cp /etc/hostname /tmp/x 2>&1); then fail "cp with two local paths succeeded"; fi
[[ $out == *"exactly one"* ]] || fail "cp local local: $out"
pass "vm cp argument errors"
if out=$(ctl vm cp a:/etc/hostname "$T/out" 2>&1); then fail "read_file on the double succeeded"; fi
[[ $out == *"not scripted"* && ! -e $T/out ]] || fail "cp from a failing agent: $out"
pass "an agent error reaches emberctl and no local file is left behind"

ctl vm delete --force a >/dev/null
ctl vm delete --force plain >/dev/null
stop_emberd
pass "done"
