# shellcheck shell=bash
# Helpers for the vsock end-to-end tests (test-vsock-*.sh; sourced, not run).
#
# On top of qemu-lib.sh (whose ensure_image builds ember-mini, with this
# build's ember-agent, once per build directory under a lock shared by the
# tests that ctest runs in parallel): the host-side test
# client tests/fakes/vsock-client, and waits on a VM's agent. The tests
# drive real QEMU guests under TCG through emberd's vhost-user-vsock device
# and the hybrid <state>/vms/<name>/vsock.sock.

# shellcheck source=tests/integration/qemu-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"

AGENT_BIN=$BUILD/packaging/agent/ember-agent
VSOCK_CLIENT=$BUILD/tests/fakes/vsock-client
[[ -x $AGENT_BIN ]] || fail "no ember-agent at $AGENT_BIN (build the ember-agent target)"
[[ -x $VSOCK_CLIENT ]] || fail "no vsock-client at $VSOCK_CLIENT (build the vsock-client target)"
READY_TIMEOUT=90	# the test machines run several TCG guests at once

# ensure_agent_image: ember-mini always includes the build's agent.
ensure_agent_image() { ensure_image; }

vsock_of() { echo "$STATE/vms/$1/vsock.sock"; }

# vclient ARGS...: the test client, its output kept in $T/vclient.out too.
vclient() { "$VSOCK_CLIENT" "$@" | tee -a "$T/vclient.out"; return "${PIPESTATUS[0]}"; }

# wait_agent NAME [SECONDS]: polls until the guest agent answers a ping
# through the VM's vsock.sock (it starts just before READY, and binds its
# echo ports before port 1024). Prints the reply.
wait_agent() {
	local sock deadline=$((SECONDS + ${2:-30})) out
	sock=$(vsock_of "$1")
	while :; do
		if out=$("$VSOCK_CLIENT" connect "$sock" 1024 --line '{"op":"ping"}' --timeout 5 2>&1) &&
		    grep -q '"pong":true' <<<"$out"; then
			# shellcheck disable=SC2034 # read by the tests
			AGENT_REPLY=$out
			return 0
		fi
		((SECONDS < deadline)) ||
		    fail "$1: the agent did not answer a ping on port 1024 within ${2:-30} s: $out"
		sleep 0.2	# poll interval
	done
}

# emberd_fds: how many file descriptors the test's emberd holds.
emberd_fds() { fd_count "$EMBERD_PID"; }

# wait_file_line FILE PATTERN SECONDS: polls until PATTERN (grep -E) is in FILE.
wait_file_line() {
	local deadline=$((SECONDS + $3))
	until grep -qE "$2" "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05	# poll interval
	done
}

# check_back WHAT: after an emberd restart, the agent of the VM whose
# vsock.sock is $S answers and a 64 KiB echo on port 5000 (ember.echo=5000)
# works within BACK_MS of READY_NS; sets BACK_LAST_MS.
check_back() {
	local ms
	"$VSOCK_CLIENT" connect "$S" 1024 --line '{"op":"ping"}' --timeout 5 >"$T/ping.out" 2>&1 &&
	    grep -q '"pong":true' "$T/ping.out" || fail "$1: no pong: $(cat "$T/ping.out")"
	"$VSOCK_CLIENT" connect "$S" 5000 --bytes 65536 --timeout 5 >"$T/echo.out" 2>&1 ||
	    fail "$1: echo failed: $(cat "$T/echo.out")"
	ms=$((($(date +%s%N) - READY_NS) / 1000000))
	((ms <= BACK_MS)) || fail "$1: agent and echo took $ms ms after emberd was ready"
	BACK_LAST_MS=$ms
}

# fd_count PID: how many fds PID holds.
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }	# ls reads the directory only; find would stat, and fail on an fd closed meanwhile

# wait_serving_lines N: emberd's log has N "serving" lines (an exec'd
# emberd keeps its pid; the log line is how the test sees it is back).
wait_serving_lines() {
	local deadline=$((SECONDS + 30))
	until [[ $(grep -c ' serving ' "$LOG") -ge $1 ]]; do
		((SECONDS < deadline)) || fail "emberd did not come back from the upgrade"
		sleep 0.02	# poll interval
	done
	until [[ -n $(answering_pid) ]]; do
		((SECONDS < deadline)) || fail "emberd does not answer after the upgrade"
		sleep 0.02	# poll interval
	done
	READY_NS=$(date +%s%N)
}
