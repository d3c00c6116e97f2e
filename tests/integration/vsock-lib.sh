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
emberd_fds() { find "/proc/$EMBERD_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# wait_file_line FILE PATTERN SECONDS: polls until PATTERN (grep -E) is in FILE.
wait_file_line() {
	local deadline=$((SECONDS + $3))
	until grep -qE "$2" "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05	# poll interval
	done
}
