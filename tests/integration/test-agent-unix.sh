#!/usr/bin/env bash
# ember-agent's real transport loop without vsock: the agent serves its
# protocol on a Unix socket (--listen-unix) and its echo service on another
# (--echo-unix), and socat plays the host. Checks ping/info/errors, several
# requests per connection, the oversize-line rule (error reply, then the
# connection is dropped and the agent keeps serving), 1 MiB each way through
# the echo service, 32 connections at once, exec in worker processes (an
# exec that sleeps does not hold up other connections, requests after it on
# its own connection wait their turn, a client that leaves mid-exec), file
# chunks, poweroff (only with --poweroff-command under --listen-unix), and
# that no fd or process is leaked.
set -euo pipefail

AGENT=${EMBER_AGENT:-${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR or EMBER_AGENT}/packaging/agent/ember-agent}
for tool in jq socat timeout sha256sum; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[[ -x $AGENT ]] || { echo "FAIL: no agent binary at $AGENT" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/ember-agent-it.XXXXXX")
SOCK=$T/agent.sock
ECHO=$T/echo.sock
LOG=$T/agent.log
AGENT_PID=
cleanup() {
	if [[ -n $AGENT_PID ]]; then
		kill "$AGENT_PID" 2>/dev/null || true
		wait "$AGENT_PID" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT

pass() { echo "ok: $*"; }
fail() {
	echo "FAIL: $*" >&2
	[[ -s $LOG ]] && sed 's/^/  | /' "$LOG" >&2
	exit 1
}
assert_eq() {
	[[ "$1" == "$2" ]] || fail "$3: expected '$1', got '${2:0:500}'"
	pass "$3"
}
assert_jq() {
	jq -e "$2" <<<"$1" >/dev/null 2>&1 || fail "$3: '$2' is false on: ${1:0:500}"
	pass "$3"
}
# send INPUT: the agent's replies to INPUT on one connection.
send() { printf '%s' "$1" | timeout 10 socat -t 5 - "UNIX-CONNECT:$SOCK"; }
fds() { ls "/proc/$AGENT_PID/fd" | wc -l; }

"$AGENT" --listen-unix "$SOCK" --echo-unix "$ECHO" --cmdline /dev/null 2>"$LOG" &
AGENT_PID=$!
for _ in $(seq 100); do
	grep -q "^ember-agent: listening on $SOCK\$" "$LOG" 2>/dev/null && break
	kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited at start"
	sleep 0.05
done
grep -q "^ember-agent: listening on $SOCK\$" "$LOG" || fail "no 'listening' line"
pass "agent started and said so"
base_fds=$(fds)

assert_eq '{"ok":true,"id":1,"pong":true,"version":"0.1.0"}' \
    "$(send $'{"op":"ping","id":1}\n')" "ping with an id"

r=$(send $'{"op":"info"}\n')
assert_jq "$r" ".ok == true and .kernel == \"$(uname -r)\"" "info: kernel release"
assert_jq "$r" '(.uptime_s | type) == "number" and .uptime_s > 0' "info: uptime"
assert_jq "$r" '(.cid == null or (.cid | type) == "number") and (.hostname | type) == "string"' \
    "info: cid and hostname"

r=$(send $'garbage\n{"op":"ping","id":"x"}\n')
assert_eq 2 "$(wc -l <<<"$r")" "garbage then ping: two replies"
assert_jq "$(sed -n 1p <<<"$r")" '.ok == false and (.error | startswith("malformed JSON"))' \
    "garbage gets an error"
assert_jq "$(sed -n 2p <<<"$r")" '.ok == true and .id == "x"' "the connection keeps serving"

r=$(send $'{"op":"launch","id":[1]}\n{"op":"ping","bogus":1}\n\n{"op":"ping"}')
assert_eq 3 "$(wc -l <<<"$r")" "blank line gets no reply"
assert_jq "$(sed -n 3p <<<"$r")" '.ok == true and .pong == true' "a last line needs no newline"
assert_jq "$(sed -n 1p <<<"$r")" '.ok == false and .id == [1] and (.error | contains("unknown op"))' \
    "unknown op gets an error with the id"
assert_jq "$(sed -n 2p <<<"$r")" '.ok == false and (.error | contains("invalid parameters"))' \
    "unexpected parameters get an error"

head -c $((1024 * 1024 + 10)) /dev/zero | tr '\0' a >"$T/oversize"
r=$( { printf '{"op":"ping","id":1}\n'; cat "$T/oversize"; printf '\n{"op":"ping","id":2}\n'; } |
    timeout 20 socat -t 5 - "UNIX-CONNECT:$SOCK" 2>/dev/null || true)
assert_eq 2 "$(wc -l <<<"$r")" "oversize line: reply, error, then nothing"
assert_jq "$(sed -n 1p <<<"$r")" '.id == 1' "the request before the oversize line is answered"
assert_jq "$(sed -n 2p <<<"$r")" '.ok == false and (.error | contains("too long"))' \
    "oversize line gets an error"
# A line of exactly the limit is still a request (an error, but answered).
r=$( { printf '{"op":"ping","id":"'; head -c $((1024 * 1024 - 22)) /dev/zero | tr '\0' b; printf '"}\n'; } |
    timeout 20 socat -t 5 - "UNIX-CONNECT:$SOCK")
assert_jq "$r" '.ok == true and (.id | length) == 1048554' "a 1 MiB line is accepted"

head -c $((1024 * 1024)) /dev/urandom >"$T/blob"
got=$(timeout 30 socat -t 5 - "UNIX-CONNECT:$ECHO" <"$T/blob" | sha256sum)
assert_eq "$(sha256sum <"$T/blob")" "$got" "echo: 1 MiB each way, byte for byte"

pids=()
for i in $(seq 32); do
	{ printf '{"op":"ping","id":%d}\n' "$i"; sleep 0.5; printf '{"op":"info","id":%d}\n' "$i"; } |
	    timeout 20 socat -t 5 - "UNIX-CONNECT:$SOCK" >"$T/c$i" &
	pids+=($!)
	timeout 30 socat -t 5 - "UNIX-CONNECT:$ECHO" <"$T/blob" >"$T/e$i" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent client failed"; done
for i in $(seq 32); do
	[[ $(jq -s "map(select(.ok and .id == $i)) | length" "$T/c$i") == 2 ]] ||
	    fail "connection $i: $(cat "$T/c$i")"
	cmp -s "$T/blob" "$T/e$i" || fail "echo connection $i differs"
done
pass "32 agent and 32 echo connections at once"


# --- exec, files, poweroff -------------------------------------------------
b64() { printf '%s' "$1" | base64 -w0; }
r=$(send "{\"op\":\"exec\",\"id\":1,\"argv\":[\"sh\",\"-c\",\"echo out; echo err >&2; exit 7\"]}"$'\n')
assert_jq "$r" ".ok and .id == 1 and .exit_code == 7 and .stdout == \"$(b64 $'out\n')\" and .stderr == \"$(b64 $'err\n')\"" \
    "exec over the socket: status and both streams"

# A sleeping exec on one connection; pings on others are answered at once.
{ printf '{"op":"exec","id":"slow","argv":["sleep","3"]}\n{"op":"ping","id":"after"}\n'; sleep 5; } |
    timeout 20 socat -t 5 - "UNIX-CONNECT:$SOCK" >"$T/slow" &
slow=$!
sleep 0.3	# let the exec start; what follows must not wait for it
t0=$(date +%s%N)
r=$(send $'{"op":"ping","id":"quick"}\n')
t1=$(date +%s%N)
assert_jq "$r" '.id == "quick"' "a ping while an exec sleeps on another connection"
(( (t1 - t0) / 1000000 < 1500 )) || fail "the ping waited $(( (t1 - t0) / 1000000 )) ms behind the exec"
pass "the ping did not wait for the exec"
wait "$slow" || fail "the slow client failed"
assert_eq '"slow" "after"' "$(jq -c .id "$T/slow" | tr '\n' ' ' | sed 's/ $//')" \
    "replies on one connection stay in request order"

# A client that leaves while its exec runs: the agent reaps the worker and lives on.
printf '{"op":"exec","argv":["sleep","1"]}\n' | timeout 5 socat -t 0.1 - "UNIX-CONNECT:$SOCK" >/dev/null || true
# The worker (and its sleep) end; poll until the agent has no children left.
for _ in $(seq 200); do
	[[ -z $(ps -o pid= --ppid "$AGENT_PID") ]] && break
	sleep 0.05	# poll interval
done
[[ -z $(ps -o pid= --ppid "$AGENT_PID") ]] || fail "the worker was not reaped: $(ps -o pid,stat,args --ppid "$AGENT_PID")"
pass "the worker of a departed client was reaped"
assert_jq "$(send $'{"op":"ping"}\n')" '.ok' "the agent serves after a client left mid-exec"
zombies=$(ps -o stat= --ppid "$AGENT_PID" | grep -c Z || true)	# pgrep skips zombies
assert_eq 0 "$zombies" "no zombie workers"

r=$(send "{\"op\":\"write_file\",\"path\":\"$T/f\",\"data\":\"$(b64 hello)\",\"truncate\":true,\"mode\":384}"$'\n'"{\"op\":\"read_file\",\"path\":\"$T/f\",\"offset\":1,\"length\":3}"$'\n')
assert_jq "$(sed -n 1p <<<"$r")" '.ok and .written == 5' "write_file"
assert_jq "$(sed -n 2p <<<"$r")" ".ok and .data == \"$(b64 ell)\" and .size == 5 and .eof == false" "read_file at an offset"
assert_eq 600 "$(stat -c %a "$T/f")" "write_file's mode"

assert_jq "$(send $'{"op":"poweroff","id":3}\n')" '.ok and .id == 3' "poweroff is answered"
for _ in $(seq 100); do
	grep -q "not powering this machine off" "$LOG" && break
	sleep 0.05	# poll interval
done
kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent died after poweroff"
grep -q "not powering this machine off" "$LOG" || fail "no log line about the refused poweroff"
pass "--listen-unix alone never powers the machine off"

P2=$T/agent2.sock
"$AGENT" --listen-unix "$P2" --cmdline /dev/null --poweroff-command "touch $T/powered-off" 2>>"$LOG" &
A2=$!
for _ in $(seq 100); do [[ -S $P2 ]] && break; sleep 0.05; done
assert_jq "$(printf '{"op":"poweroff"}\n' | timeout 10 socat -t 5 - "UNIX-CONNECT:$P2")" '.ok' \
    "poweroff answered (--poweroff-command)"
for _ in $(seq 100); do [[ -e $T/powered-off ]] && break; sleep 0.05; done
[[ -e $T/powered-off ]] || fail "--poweroff-command did not run"
pass "--poweroff-command runs after the reply"
kill "$A2" 2>/dev/null || true
wait "$A2" 2>/dev/null || true

kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent died"
sleep 0.2
assert_eq "$base_fds" "$(fds)" "no fd left open"
if grep -v '^ember-agent: ' "$LOG" | grep -q .; then
	fail "log lines without the ember-agent: prefix"
fi
pass "every log line is prefixed"
