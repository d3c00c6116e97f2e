# Helpers for the Firecracker-backend integration tests (test-fc-*.sh),
# sourced after lib.sh's requirements: a private emberd whose
# firecracker.binary is tests/fakes/fc-double (with require_kvm: false, so
# they run without /dev/kvm), a dummy image "mini" (small files: the double
# only checks that they open), and polls with deadlines.
#
# Environment for the doubles is set in emberd's own environment (emberd
# passes it on to the hypervisors it spawns): fc_start_emberd ENV=VAL...
# Every double a test starts has $T in its command line, so the EXIT trap
# can find and kill the ones emberd left running (by pid, after emberd).

BUILD=${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR to the build directory}
EMBERCTL=${EMBERCTL:-$BUILD/client/emberctl}
FC_DOUBLE=$BUILD/tests/fakes/fc-double
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -x $FC_DOUBLE ]] || fail "$FC_DOUBLE not built"
[[ -x $EMBERCTL ]] || fail "$EMBERCTL not built"

# pids of processes whose command line mentions PATH (the doubles of this test).
procs_under() {
	local f pid cmd
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		cmd=$({ tr '\0' ' ' <"$f"; } 2>/dev/null) || continue
		[[ $cmd == *"$1"* ]] && echo "$pid"
	done
	return 0
}

# kill_double SIG PID: signals PID only while its command line still names
# this test's state (pids are reused quickly here; see alive in lib.sh).
kill_double() {
	local cmd
	cmd=$({ tr '\0' ' ' <"/proc/$2/cmdline"; } 2>/dev/null) || return 0
	[[ $cmd == *"$STATE/vms/"* ]] && kill "$1" "$2" 2>/dev/null
	return 0
}

_fc_cleanup() {
	local p
	kill_mine -KILL "${_ember_pids[@]}"
	for p in $(procs_under "$STATE/vms/"); do
		kill_double -KILL "$p"
	done
	kill_test_processes
	rm -rf "$T"
}
trap _fc_cleanup EXIT

# The double needs no KVM: require_kvm: false lets the backend report
# itself available on machines without /dev/kvm (test-fc-probe.sh checks
# the real KVM check).
CONFIG=$T/emberd.yaml
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$FC_DOUBLE" >"$CONFIG"
EMBERD_EXTRA=(--config "$CONFIG")

# fc_start_emberd [ENV=VAL...]: the test's emberd with those variables
# (and FC_DOUBLE_VSOCK_PORTS=1024) in its environment.
fc_start_emberd() {
	echo "=== emberd (env $*)" >>"$LOG"
	env FC_DOUBLE_VSOCK_PORTS=1024 "$@" "$EMBERD" --state-dir "$STATE" --socket "$SOCK" \
		"${EMBERD_EXTRA[@]}" 2>>"$LOG" &
	EMBERD_PID=$!
	_ember_pids+=("$EMBERD_PID")
	wait_ready "$SOCK" "$EMBERD_PID"
}

# ctl ARGS...: emberctl on the test's socket.
ctl() { "$EMBERCTL" --socket "$SOCK" "$@"; }

# make_image [NAME]: imports dummy files as an image with a root filesystem.
make_image() {
	local name=${1:-mini} d=$T/img-src
	mkdir -p "$d"
	printf 'bzImage\n' >"$d/kernel"
	head -c 8192 /dev/urandom >"$d/vmlinux"
	printf 'initrd\n' >"$d/initrd"
	head -c 262144 /dev/urandom >"$d/rootfs"
	call_ok image.import "{\"name\":\"$name\",\"kernel\":\"$d/kernel\",\"vmlinux\":\"$d/vmlinux\",\"initrd\":\"$d/initrd\",\"rootfs\":\"$d/rootfs\"}" >/dev/null
	call_ok daemon.info | jq -e '.backends[] | select(.name == "firecracker") | .available' >/dev/null ||
		fail "the firecracker backend (fc-double) is not available: $(call_ok daemon.info)"
}

inspect() { call_ok vm.inspect "{\"name\":\"$1\"}"; }
status_of() { inspect "$1" | jq -r .status; }
pid_of() { inspect "$1" | jq -r .pid; }
vmdir() { echo "$STATE/vms/$1"; }
reqlog() { echo "$STATE/vms/$1/firecracker.sock.requests.jsonl"; }

# wait_until SECONDS WHAT CMD...: polls CMD until it succeeds; fails after the deadline.
wait_until() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		((SECONDS < deadline)) || fail "$what: not within the deadline"
		sleep 0.02	# poll interval, not synchronisation
	done
}

has_status() { [[ $(status_of "$1") == "$2" ]]; }
# wait_status NAME STATUS [SECONDS]
wait_status() { wait_until "${3:-10}" "$1 becomes $2 (is $(status_of "$1"))" has_status "$1" "$2"; }
# gone PID: exited (a zombie counts: an adopted process is reaped by init, not emberd).
# A pid reused by another process (its command line no longer names our
# state) counts as gone too.
gone() {
	local cmd
	! kill -0 "$1" 2>/dev/null && return 0
	[[ $({ awk '{print $3}' "/proc/$1/stat"; } 2>/dev/null) == Z ]] && return 0
	cmd=$({ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 0
	[[ $cmd != *"$STATE/vms/"* ]]
}

# vsock_hello SOCKET: CONNECT 1024 through the hybrid vsock socket, prints what came back.
vsock_hello() {
	printf 'CONNECT 1024\nhello\n' | timeout 10 socat -t 5 - "UNIX-CONNECT:$1" 2>/dev/null
}
# assert_vsock_answers NAME
assert_vsock_answers() {
	local got
	got=$(vsock_hello "$(vmdir "$1")/vsock.sock")
	[[ $got == $'OK '[0-9]*$'\nhello' ]] || fail "$1: CONNECT 1024 got '$got'"
}

# assert_no_process_for NAME: no process mentions the VM's directory.
assert_no_process_for() {
	local p
	p=$(procs_under "$(vmdir "$1")/")
	[[ -z $p ]] || fail "$1: processes still running: $p ($(tr '\0' ' ' <"/proc/${p%%$'\n'*}/cmdline" 2>/dev/null))"
}

# assert_sockets_gone NAME
assert_sockets_gone() {
	local d left
	d=$(vmdir "$1")
	left=$(cd "$d" && ls -d firecracker.sock vsock.sock vsock.sock_* 2>/dev/null || true)
	[[ -z $left ]] || fail "$1: sockets left behind: $left"
}
