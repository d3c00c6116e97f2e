# Helpers for the QEMU integration tests (test-qemu-*.sh; sourced, not run).
#
# On top of lib.sh: a private emberd configured for QEMU under TCG (nested
# KVM is unreliable on test machines), emberctl against it, the ember-mini
# image built once per build directory and shared between tests, and waits
# on a VM's console.log with deadlines. TCG boots hang right after "Probing
# EDD" now and then; the boot helpers give a VM one more try when the
# readiness line does not appear in time, and say so.

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EMBERCTL=${EMBERCTL:?set EMBERCTL to the emberctl binary}
BUILD=${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR to the build directory}
SRC=${EMBER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
for tool in qemu-system-x86_64 qemu-img flock; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[[ -x /usr/sbin/mkfs.ext4 || -x /sbin/mkfs.ext4 ]] || command -v mkfs.ext4 >/dev/null ||
    { echo "SKIP: mkfs.ext4 not installed"; exit 77; }

IMAGE_DIR=$BUILD/image-mini
READY='EMBER-MINI READY'
READY_TIMEOUT=45	# seconds for a TCG boot to print READY before one retry
CONFIG=$T/emberd.yaml
printf 'qemu:\n  accel: tcg\ndefaults:\n  backend: qemu\n  memory: 256M\n' >"$CONFIG"
EMBERD_EXTRA=(--config "$CONFIG" --log-level debug)

# Kills the QEMU processes this test's VMs recorded (and only those: the
# command line must name the test's directory), then lib.sh's cleanup.
_qemu_cleanup() {
	local f pid
	for f in "$STATE"/vms/*/vm.json; do
		[[ -f $f ]] || continue
		pid=$(jq -r '.pid // 0' "$f" 2>/dev/null) || continue
		[[ $pid -gt 0 ]] || continue
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$T/"; then
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
	_lib_cleanup
}
trap _qemu_cleanup EXIT

# ctl ARGS...: emberctl against the test's emberd.
ctl() { "$EMBERCTL" --socket "$SOCK" "$@"; }

# ensure_image: builds ember-mini into $IMAGE_DIR unless the image there was
# built from the same inputs (this build's ember-agent and the image scripts,
# compared by sha256: build-mini.sh --check). The lock, which
# test-image-mini.sh takes too, keeps concurrent tests from building twice
# or booting a half-written image.
ensure_image() {
	local lock=$BUILD/image-mini.lock
	(
		flock -w 600 9 || { echo "FAIL: cannot lock $lock" >&2; exit 1; }
		if why=$(EMBER_BUILD_DIR=$BUILD bash "$SRC/packaging/image/build-mini.sh" \
		    --check "$IMAGE_DIR" 2>&1); then
			exit 0
		fi
		echo "--- building ember-mini into $IMAGE_DIR (${why#build-mini.sh: })"
		EMBER_BUILD_DIR=$BUILD bash "$SRC/packaging/image/build-mini.sh" "$IMAGE_DIR" \
		    >"$T/build-mini.log" 2>&1 || {
			tail -n 20 "$T/build-mini.log" >&2
			exit 1
		}
	) 9>"$lock" || fail "building ember-mini failed"
	BOOT_ARGS=$(jq -r .boot_args "$IMAGE_DIR/image.json")
	[[ -n $BOOT_ARGS && $BOOT_ARGS != null ]] || fail "no boot_args in $IMAGE_DIR/image.json"
}

# import_image NAME [IMPORT-FLAGS...]: the mini kernel and initrd as NAME.
import_image() {
	local name=$1
	shift
	ctl image import "$name" --kernel "$IMAGE_DIR/vmlinuz" --vmlinux "$IMAGE_DIR/vmlinux" \
	    --initrd "$IMAGE_DIR/initrd.gz" --boot-args "$BOOT_ARGS" "$@" >/dev/null ||
	    fail "image import $name $*"
	pass "image $name imported"
}

# field NAME FILTER: a jq filter's raw value on the VM's record.
field() {
	local rec
	rec=$(ctl --json vm inspect "$1") || fail "vm inspect $1"
	jq -r "$2" <<<"$rec"
}

console_of() { echo "$STATE/vms/$1/console.log"; }
console_size() { stat -c %s "$(console_of "$1")" 2>/dev/null || echo 0; }
# console_since NAME OFFSET: the console after byte OFFSET.
console_since() { tail -c +$(($2 + 1)) "$(console_of "$1")" 2>/dev/null; }

# wait_console NAME OFFSET PATTERN SECONDS: polls until PATTERN (grep -E)
# appears in the console after OFFSET; 1 after the deadline.
wait_console() {
	local deadline=$((SECONDS + $4))
	until console_since "$1" "$2" | grep -E "$3" >/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.1	# poll interval
	done
}

# wait_status NAME STATUS [SECONDS]: polls vm inspect until STATUS.
wait_status() {
	local deadline=$((SECONDS + ${3:-15})) s
	while :; do
		s=$(field "$1" .status)
		[[ $s == "$2" ]] && return 0
		((SECONDS < deadline)) || fail "$1: status $s, expected $2 within ${3:-15} s"
		sleep 0.05
	done
}

# gone PID: no such process, or a zombie nobody has reaped yet (an orphan
# whose parent, emberd, was killed).
gone() {
	! kill -0 "$1" 2>/dev/null ||
	    [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) == Z ]]
}

# wait_gone PID [SECONDS]
wait_gone() {
	local deadline=$((SECONDS + ${2:-10}))
	until gone "$1"; do
		((SECONDS < deadline)) || fail "process $1 still exists after ${2:-10} s"
		sleep 0.05
	done
}

# create_booted NAME [CREATE-FLAGS...]: vm create, then READY on its
# console; a VM that does not get there is deleted and created once more.
create_booted() {
	local name=$1 try
	shift
	for try in 1 2; do
		ctl vm create "$name" "$@" >/dev/null || fail "vm create $name $*"
		if wait_console "$name" 0 "$READY" "$READY_TIMEOUT"; then
			pass "$name booted (READY on its console)"
			return 0
		fi
		[[ $try == 2 ]] && break
		echo "RETRY: $name printed no READY line within $READY_TIMEOUT s" \
		    "(console: $(tail -n 1 "$(console_of "$name")")); deleting it and creating it again"
		ctl vm delete --force "$name" >/dev/null || fail "vm delete --force $name"
	done
	fail "$name printed no READY line within $READY_TIMEOUT s, twice"
}

# await_booted NAME OFFSET: READY after OFFSET, else (once) a forced stop
# and a fresh start. Sets BOOT_OFFSET to where the successful boot began.
await_booted() {
	local name=$1 try
	BOOT_OFFSET=$2
	for try in 1 2; do
		if wait_console "$name" "$BOOT_OFFSET" "$READY" "$READY_TIMEOUT"; then
			pass "$name booted (READY on its console)"
			return 0
		fi
		[[ $try == 2 ]] && break
		echo "RETRY: $name printed no READY line within $READY_TIMEOUT s" \
		    "(console: $(tail -n 1 "$(console_of "$name")")); stopping and starting it again"
		ctl vm stop --force "$name" >/dev/null || fail "vm stop --force $name"
		BOOT_OFFSET=$(console_size "$name")
		ctl vm start "$name" >/dev/null || fail "vm start $name"
	done
	fail "$name printed no READY line within $READY_TIMEOUT s, twice"
}

# start_booted NAME: vm start, then await_booted.
start_booted() {
	local off
	off=$(console_size "$1")
	ctl vm start "$1" >/dev/null || fail "vm start $1"
	await_booted "$1" "$off"
}
