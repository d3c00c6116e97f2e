# Shared helpers for the control-plane integration tests (sourced, not run).
#
# Each test gets a private work directory ($T) holding a state directory
# ($STATE) whose control socket ($SOCK) lives inside it, and drives a
# private emberd through raw JSON-RPC over socat. Readiness is polled with a
# deadline (a daemon.info that answers with the new pid), never slept for.
# An assertion that fails prints what it saw plus the tail of the daemon log
# and ends the test with status 1. The EXIT trap kills every emberd the test
# started and removes $T.

EMBERD=${EMBERD:?set EMBERD to the emberd binary}
for tool in jq socat timeout; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/ember-it.XXXXXX")
T=$(cd "$T" && pwd -P)	# emberd records the real path
STATE=$T/state
SOCK=$STATE/emberd.sock
LOG=$T/emberd.log
EMBERD_PID=
EMBERD_EXTRA=()		# extra emberd flags, e.g. (--config FILE)
_ember_pids=()		# background processes to kill at exit (if still ours)
_ember_groups=()	# groups socket_group_setup made, removed at exit

# alive PID: PID is still a running child of this shell. pid_max may be
# small and pids are reused quickly, so a bare kill -0 (or kill) of a child
# that already ended could reach somebody else's process.
alive() {
	local state ppid
	[[ -r /proc/$1/stat ]] || return 1
	read -r _ _ state ppid _ <"/proc/$1/stat" 2>/dev/null || return 1
	[[ $ppid == "$$" && $state != Z ]]
}

# kill_mine [-SIG] PID...: signals those PIDs that are still our children.
kill_mine() {
	local sig=-TERM p
	[[ ${1:-} == -* ]] && { sig=$1; shift; }
	for p in "$@"; do
		alive "$p" && kill "$sig" "$p" 2>/dev/null || true
	done
}

# kill_test_processes: SIGKILLs every process whose command line names $T
# (hypervisors emberd started in their own session, listeners, doubles).
# $T is this test's own fresh directory, so nothing else can match, and a
# leftover QEMU would otherwise burn a CPU, or hold ctest's output pipe
# open, long after the test ended.
kill_test_processes() {
	local d pid
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[[ $pid == "$$" ]] && continue
		if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -F -- "$T/" >/dev/null; then
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
}

_lib_cleanup() {
	local g
	kill_mine -KILL "${_ember_pids[@]}"
	kill_test_processes
	rm -rf "$T"
	for g in "${_ember_groups[@]}"; do
		groupdel "$g" 2>/dev/null || true
	done
}
trap _lib_cleanup EXIT

# socket_group_setup PREFIX [TOOL...]: for tests where root's emberd
# serves other uids through its socket group. Skips unless running as root
# with setpriv, groupadd, groupdel and the TOOLs; creates the group
# $GROUP (PREFIX and this shell's pid, so parallel tests never share one),
# removed at exit; lets other uids pass through $T (not list it) and moves
# the control socket to $SOCK=$T/run/emberd.sock, outside the state
# directory. The test still writes socket_group: $GROUP into its config.
socket_group_setup() {
	local prefix=$1 tool
	shift
	if [[ $(id -u) -ne 0 ]]; then echo "SKIP: needs root (acts as other uids)"; exit 77; fi
	for tool in setpriv groupadd groupdel "$@"; do
		command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
	done
	GROUP=$prefix$$
	groupadd "$GROUP" || fail "groupadd $GROUP"
	_ember_groups+=("$GROUP")
	chmod 0711 "$T"
	mkdir -m 0755 "$T/run"
	SOCK=$T/run/emberd.sock
}

note() { echo "--- $*"; }
pass() { echo "ok: $*"; }

# fail MESSAGE...: reports and ends the test.
fail() {
	echo "FAIL: $*" >&2
	if [[ -s $LOG ]]; then
		echo "  emberd log (last 30 lines):" >&2
		tail -n 30 "$LOG" | sed 's/^/  | /' >&2
	fi
	exit 1
}

# assert_eq EXPECTED ACTUAL WHAT
assert_eq() {
	if [[ "$1" != "$2" ]]; then
		fail "$3: expected '$1', got '$2'"
	fi
	pass "$3"
}

# assert_jq JSON FILTER WHAT: FILTER evaluates to true on JSON.
assert_jq() {
	local out
	out=$(jq -e "$2" <<<"$1" 2>&1) || fail "$3: '$2' is ${out:-false} on: ${1:0:1500}"
	pass "$3"
}

# jqr JSON FILTER: prints FILTER's raw value.
jqr() { jq -r "$2" <<<"$1"; }

# rpc_to SOCKET LINE: sends one request line, prints the reply line(s).
# The daemon answers and closes after our half-close, so this returns as
# soon as the reply is in; -t bounds how long a slow reply is waited for.
rpc_to() {
	printf '%s\n' "$2" | timeout 20 socat -t 15 - "UNIX-CONNECT:$1"
}

# rpc LINE: rpc_to the test's emberd.
rpc() { rpc_to "$SOCK" "$1"; }

# call METHOD [PARAMS_JSON]: a request with id 1; prints the reply.
call() {
	local params=${2:-null}
	rpc "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$params}"
}

# call_ok METHOD [PARAMS_JSON]: like call, prints .result, fails on an error.
call_ok() {
	local r
	r=$(call "$@") || fail "$1: no reply (emberd pid ${EMBERD_PID:-?} $(alive "${EMBERD_PID:-0}" && echo is running || echo is gone))"
	jq -e 'has("result")' <<<"$r" >/dev/null || fail "$1 ${2:-}: $r"
	jq -c .result <<<"$r"
}

# create NAME [VSOCK]: vm.create without starting; prints the reply.
create() {
	call vm.create "{\"name\":\"$1\",\"vsock\":${2:-false},\"start\":false}"
}

# answering_pid [SOCKET]: the pid of the emberd that answers daemon.info on
# SOCKET ($SOCK) within 2 s; nothing when none does.
answering_pid() {
	local sock=${1:-$SOCK} r
	[[ -S $sock ]] || return 0
	r=$(printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"daemon.info"}' |
	    timeout 2 socat -t 2 - "UNIX-CONNECT:$sock" 2>/dev/null) || return 0
	jq -r '.result.pid // empty' <<<"$r" 2>/dev/null || true
}

# wait_ready [SOCKET] [PID]: polls until emberd PID answers daemon.info on
# SOCKET; fails if it exits first or the 30 s deadline passes (an ASan emberd on a
# loaded 2-core machine has taken over 10 s).
wait_ready() {
	local sock=${1:-$SOCK} pid=${2:-$EMBERD_PID} deadline=$((SECONDS + 30))
	while ((SECONDS < deadline)); do
		alive "$pid" || fail "emberd (pid $pid) exited during startup"
		[[ $(answering_pid "$sock") == "$pid" ]] && return 0
		sleep 0.02	# poll interval, not synchronisation
	done
	fail "emberd (pid $pid) did not answer on $sock within 30 s"
}

# spawn_emberd ARGS...: starts an emberd in the background (log appended to
# $LOG), records its pid in SPAWNED_PID; does not wait for it.
spawn_emberd() {
	echo "=== emberd $*" >>"$LOG"
	"$EMBERD" "$@" 2>>"$LOG" &
	SPAWNED_PID=$!
	_ember_pids+=("$SPAWNED_PID")
}

# start_emberd: the test's emberd on $STATE and $SOCK, ready to serve.
start_emberd() {
	spawn_emberd --state-dir "$STATE" --socket "$SOCK" "${EMBERD_EXTRA[@]}"
	EMBERD_PID=$SPAWNED_PID
	wait_ready "$SOCK" "$EMBERD_PID"
}

# wait_exit PID [SECONDS]: waits for a child to exit, sets EXIT_STATUS;
# kills it and fails after the deadline (default 15 s).
wait_exit() {
	local pid=$1 deadline=$((SECONDS + ${2:-15}))
	while alive "$pid" && ((SECONDS < deadline)); do
		sleep 0.02
	done
	if alive "$pid"; then
		kill_mine -KILL "$pid"
		fail "pid $pid did not exit within ${2:-15} s"
	fi
	EXIT_STATUS=0
	wait "$pid" || EXIT_STATUS=$?
}

# stop_emberd: SIGTERM; asserts a clean exit.
stop_emberd() {
	alive "$EMBERD_PID" || fail "emberd (pid $EMBERD_PID) is not running"
	kill -TERM "$EMBERD_PID"
	wait_exit "$EMBERD_PID"
	[[ $EXIT_STATUS -eq 0 ]] || fail "emberd exited $EXIT_STATUS after SIGTERM"
	EMBERD_PID=
}

# crash_emberd: kill -9, reaped; the socket file stays behind.
crash_emberd() {
	alive "$EMBERD_PID" || fail "emberd (pid $EMBERD_PID) died before the test killed it"
	kill -9 "$EMBERD_PID"
	wait "$EMBERD_PID" 2>/dev/null || true
	EMBERD_PID=
}

# restart_emberd: kill -9 and start again on the same state directory.
restart_emberd() {
	crash_emberd
	start_emberd
}

# rfind ARGS...: find ARGS, walked again when a directory vanished under
# it. emberd's writer removes trash while tests look at the state directory;
# find then fails ("No such file or directory", which -ignore_readdir_race
# does not cover for directories), and what it printed is no walk of any one
# moment. Any other error, or 20 vanishings in a row, fails as find does.
rfind() {
	local out try
	for try in $(seq 20); do
		if out=$(find "$@" 2>"$T/rfind.err"); then
			[[ -z $out ]] || printf '%s\n' "$out"
			return 0
		fi
		grep -q 'No such file or directory' "$T/rfind.err" || break
	done
	cat "$T/rfind.err" >&2
	return 1
}

# wait_no_trash [DIR]: trash (.trash-*) under DIR (the state directory) is
# removed by emberd's writer thread, off the loop, also what a crash left at
# start: waits until none is left (20 s deadline), else fails.
wait_no_trash() {
	local dir=${1:-$STATE} deadline=$((SECONDS + 20)) left
	while :; do
		left=$(rfind "$dir" -name '.trash-*' -print -quit) || fail "cannot look for trash under $dir"
		[[ -n $left ]] || return 0
		((SECONDS < deadline)) || fail "trash still there 20 s on: $left"
		sleep 0.05	# poll interval, not synchronisation
	done
}

# log_since MARK: the daemon log after byte offset MARK (see log_mark).
log_mark() { stat -c %s "$LOG" 2>/dev/null || echo 0; }

# strace_emberd OUT STRACE-ARGS...: strace attached to every thread of
# emberd, writing OUT; returns once it traces them (strace says "attached"),
# sets STRACE_PID. No strace, or one that cannot attach: the test is
# skipped (exit 77).
strace_emberd() {
	local out=$1 deadline=$((SECONDS + 10))
	shift
	command -v strace >/dev/null || { echo "SKIP: strace not installed"; exit 77; }
	strace -f "$@" -o "$out" -p "$EMBERD_PID" 2>"$out.err" &
	STRACE_PID=$!
	_ember_pids+=("$STRACE_PID")
	until [[ $(grep -c 'attached' "$out.err" 2>/dev/null || true) -ge 1 ]]; do
		alive "$STRACE_PID" || { cat "$out.err" >&2; echo "SKIP: strace cannot attach"; exit 77; }
		((SECONDS < deadline)) || fail "strace did not attach to emberd within 10 s"
		sleep 0.02	# poll interval, not synchronisation
	done
}

# bg NAME CMD...: a client in the background, its output in $T/out.NAME,
# its pid in ${BG[NAME]} (killed at exit like every pid the test started).
declare -A BG
bg() {
	local name=$1
	shift
	"$@" >"$T/out.$name" 2>&1 &
	BG[$name]=$!
	_ember_pids+=("$!")
}
log_since() { tail -c +$(($1 + 1)) "$LOG"; }
