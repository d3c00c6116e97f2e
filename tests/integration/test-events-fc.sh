#!/usr/bin/env bash
# disk.progress and the Firecracker backend's events, on the fc-double (no
# KVM needed): image.progress of a 256 MiB import (copy bytes, if a tick
# falls inside the copy, within the total); a VM created from that image
# copies its root filesystem, and a subscriber sees disk.progress from 0 to
# 100 % with non-decreasing figures and the image's allocated size as the
# total, then the VM's status changes; vm create --wait with stderr not a
# terminal prints the copy's progress as plain lines, and on a terminal
# (script(1)) as one line rewritten with \r. Killing the double from
# outside gives vm.exited with its signal. SIGTERM sends daemon.shutdown
# and ends emberctl events with status 0.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds.
wait_for() {
	local what=$1 deadline=$((SECONDS + $2))
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || fail "timed out waiting until $what"
		sleep 0.05	# poll interval
	done
}
has_event() { jq -e -s "any(.[]; $2)" "$1" >/dev/null 2>&1; }

fc_start_emberd FC_DOUBLE_AGENT_PORTS=1024
make_image mini
# A root filesystem with 256 MiB of random data (no holes: every block is copied).
head -c $((256 * 1024 * 1024)) /dev/urandom >"$T/big-rootfs"
since=$(call_ok events.subscribe | jq -r .seq)
"$EMBERCTL" --socket "$SOCK" events --json --since "$since" --type image.progress >"$T/ev.import" \
    2>"$T/ev.err" &
ipid=$!
_ember_pids+=("$ipid")
call_ok image.import "{\"name\":\"big\",\"kernel\":\"$T/img-src/kernel\",\"vmlinux\":\"$T/img-src/vmlinux\",\"rootfs\":\"$T/big-rootfs\"}" >/dev/null
rm -f "$T/big-rootfs"
wait_for "the import's done event" 30 has_event "$T/ev.import" '.data.image == "big" and .data.phase == "done"'
kill_mine "$ipid"
imp=$(jq -s '[.[] | select(.data.image == "big")]' "$T/ev.import")
echo "    import: $(jq -c '[.[] | .data.phase + (if .data.percent then " \(.data.percent)%" else "" end)]' <<<"$imp")"
assert_jq "$imp" 'all(.[]; (.data.done_bytes // 0) <= (.data.total_bytes // 0) and
    (.data.percent // 0) <= 100) and .[-1].data.phase == "done"' \
    "image.progress of a 256 MiB import: steps, copy bytes within the total, then done"
total=$(( $(stat -c %b "$STATE/images/big/rootfs.img") * $(stat -c %B "$STATE/images/big/rootfs.img") ))

since=$(call_ok events.subscribe | jq -r .seq)
"$EMBERCTL" --socket "$SOCK" events --json --since "$since" --vm d1 >"$T/ev" 2>"$T/ev.err" &
fpid=$!
_ember_pids+=("$fpid")

note "disk copy progress"
ctl vm create d1 --image big --no-start >/dev/null || fail "vm create d1"
wait_for "d1 created" 30 has_event "$T/ev" '.type == "vm.status" and .data.to == "created"'
ev=$(jq -s '[.[] | select(.type == "disk.progress")]' "$T/ev")
echo "    $(jq -c '[.[] | .data.percent]' <<<"$ev") (total $total bytes)"
assert_jq "$ev" "length >= 2 and .[0].data.done_bytes == 0 and .[-1].data.percent == 100 and
    all(.[]; .data.total_bytes == $total and .vm == \"d1\" and .owner == 0)" \
    "disk.progress: 0 first, 100 % last, the image's allocated size as total"
assert_jq "$ev" '[.[].data.done_bytes] | . == sort' "done_bytes never goes back"
assert_jq "$(jq -s . "$T/ev")" '([.[] | select(.type == "disk.progress")] | last.seq) <
    ([.[] | select(.type == "vm.status" and .data.to == "created")] | first.seq)' \
    "the copy ends before the VM is created"

note "vm create --wait prints the copy's progress (not a terminal: plain lines)"
ctl vm create d2 --image big --vsock --wait 30 >/dev/null 2>"$T/create.err" ||
    fail "vm create d2 --wait: $(cat "$T/create.err")"
grep -E '^d2: disk copy [0-9]+% ' "$T/create.err" >/dev/null ||
    fail "no progress line on stderr: $(head -c 500 "$T/create.err")"
pass "vm create --wait printed disk copy progress lines"

note "on a terminal: one progress line, rewritten in place"
if command -v script >/dev/null; then
	# script(1) gives emberctl a pseudo-terminal; its output lands in the file.
	script -qec "$EMBERCTL --socket $SOCK vm create d3 --image big --no-vsock" "$T/tty.out" \
	    >/dev/null </dev/null || fail "vm create d3 on a terminal: $(tail -c 500 "$T/tty.out")"
	grep -a $'\rd3: disk copy [0-9]*% .*\e\[K' "$T/tty.out" >/dev/null ||
	    fail "no \\r-rewritten progress line on the terminal: $(od -c "$T/tty.out" | head -20)"
	grep -a 'd3: created' "$T/tty.out" >/dev/null || fail "no confirmation after the progress line"
	pass "a terminal gets the progress line rewritten with \\r, cleared before the confirmation"
else
	echo "SKIP: script(1) not installed; the terminal progress line is not checked"
fi

note "the hypervisor killed from outside"
ctl vm start d1 >/dev/null || fail "vm start d1"
pid=$(jq -r .pid "$STATE/vms/d1/vm.json")
kill_double -KILL "$pid"
wait_for "d1 failed" 30 has_event "$T/ev" '.type == "vm.status" and .data.to == "failed"'
assert_jq "$(jq -s . "$T/ev")" 'any(.[]; .type == "vm.exited" and .data.signal == 9)' \
    "vm.exited with signal 9"
kill_mine "$fpid"

note "SIGTERM: daemon.shutdown, then the stream ends"
since=$(call_ok events.subscribe | jq -r .seq)
"$EMBERCTL" --socket "$SOCK" events --since "$since" >"$T/ev.end" 2>"$T/ev.end.err" &
epid=$!
_ember_pids+=("$epid")
# (--since: nothing is missed; seeing the reload shows the subscriber is
# connected before SIGTERM stops emberd accepting)
kill -HUP "$EMBERD_PID"
wait_for "the subscriber sees daemon.reload" 30 grep -q 'daemon.reload' "$T/ev.end"
kill -TERM "$EMBERD_PID"
wait_exit "$epid" 40
assert_eq 0 "$EXIT_STATUS" "emberctl events exits 0 when emberd shuts down"
grep -E '^[0-9]+ +[0-9:.]+Z daemon.shutdown +\{"signal":"SIGTERM"\}' "$T/ev.end" >/dev/null ||
    fail "no daemon.shutdown line: $(cat "$T/ev.end")"
pass "the stream carries daemon.shutdown {signal: SIGTERM}"
wait_exit "$EMBERD_PID" 40
