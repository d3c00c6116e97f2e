# Integration test for tests/fakes/fc-double, the Firecracker stand-in that
# ember's Firecracker backend is tested against. Drives its API with
# curl --unix-socket and its hybrid vsock socket with a small python3 client;
# every wait is a poll with a deadline, never a bare sleep.
set -u

BUILD=${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR to the build directory}
FC=$BUILD/tests/fakes/fc-double
for tool in curl python3; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
[ -x "$FC" ] || { echo "FAIL: $FC not built" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/fc-double-it.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	[ -f "$T/stderr" ] && { echo "--- fc-double stderr:" >&2; tail -20 "$T/stderr" >&2; }
	exit 1
}
pass() { echo "ok: $*"; }

# wait_for DEADLINE_S CMD...: polls CMD until it succeeds or the deadline passes.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.02
	done
}

# exited PID: the process is gone or a zombie waiting to be reaped.
exited() {
	! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# start_fc NAME [ENV=VAL...]: starts a double on $T/NAME.sock; sets FC_PID, SOCK, RLOG.
start_fc() {
	local name=$1
	shift
	SOCK=$T/$name.sock
	RLOG=$T/$name.jsonl
	env FC_DOUBLE_LOG="$RLOG" "$@" "$FC" --api-sock "$SOCK" --id "$name" \
		--log-path /dev/null --level Debug --boot-timer >"$T/$name.stdout" 2>>"$T/stderr" &
	FC_PID=$!
	PIDS+=("$FC_PID")
	wait_for 10 test -S "$SOCK" || fail "$name: API socket never appeared"
}

# api METHOD PATH [BODY]: sets STATUS and BODY from the reply.
api() {
	local args=(-s -o "$T/reply" -w '%{http_code}' -X "$1" --unix-socket "$SOCK" "http://localhost$2")
	[ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	STATUS=$(curl "${args[@]}") || fail "curl $1 $2 failed"
	BODY=$(cat "$T/reply")
}

# expect STATUS METHOD PATH [BODY]
expect() {
	local want=$1
	shift
	api "$@"
	[ "$STATUS" = "$want" ] || fail "$1 $2 ${3:-}: status $STATUS, want $want; body: $BODY"
}

# expect_fault METHOD PATH BODY SUBSTRING: a 400 whose fault_message contains SUBSTRING.
expect_fault() {
	expect 400 "$1" "$2" "$3"
	python3 -c 'import json,sys; m=json.loads(sys.argv[1])["fault_message"]; sys.exit(sys.argv[2] not in m)' \
		"$BODY" "$4" || fail "$1 $2: fault_message lacks \"$4\": $BODY"
}

# vsock_client SOCK PAYLOAD: prints what came back before the double closed (2 s deadline).
vsock_client() {
	python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode().decode('unicode_escape').encode())
s.shutdown(socket.SHUT_WR)
got = b''
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except socket.timeout:
    got += b'<timeout>'
sys.stdout.write(repr(got))
EOF
}

KERNEL=$T/vmlinux
ROOTFS=$T/rootfs.ext4
: >"$KERNEL"
: >"$ROOTFS"

# ---- command line ------------------------------------------------------
[ "$("$FC" --version)" = "Firecracker v1.16.1" ] || fail "--version"
"$FC" --bogus-flag 2>/dev/null && fail "an unknown flag was accepted"
"$FC" --id x 2>/dev/null && fail "a missing --api-sock was accepted"
"$FC" --api-sock "$T/c.sock" --config-file "$T/cfg.json" 2>/dev/null && fail "--config-file was accepted"
[ -e "$T/c.sock" ] && fail "a rejected command line left a socket behind"
pass "command line"

# ---- happy path, validation, request log ---------------------------------
start_fc vm1 FC_DOUBLE_VSOCK_PORTS=1024,5000
expect 200 GET /
[[ $BODY == *'"state":"Not started"'* && $BODY == *'"id":"vm1"'* ]] || fail "instance info: $BODY"

expect_fault PUT /machine-config '{"vcpu_count":2,"mem_size_mib":256,"bogus":true}' 'unknown field `bogus`'
expect_fault PUT /machine-config '{"vcpu_count":"2","mem_size_mib":256}' 'invalid type: string'
expect_fault PUT /machine-config '{"vcpu_count":2}' 'missing field `mem_size_mib`'
expect_fault PUT /machine-config '{"vcpu_count":33,"mem_size_mib":256}' 'number of vCPUs'
expect_fault PUT /machine-config '{"vcpu_count":2,"mem_size_mib":0}' 'memory size (MiB)'
expect_fault PUT /machine-config '{"vcpu_count":2,' 'deserializing the json body'
expect_fault PUT /actions '{"action_type":"InstanceStart"}' 'without kernel configuration'
expect_fault PUT /actions '{"action_type":"Reboot"}' 'unknown variant `Reboot`'
expect_fault PATCH /vm '{"state":"Paused"}' 'not supported before starting'
expect_fault PUT /boot-source '{"kernel_image_path":"/nonexistent/vmlinux"}' 'kernel file cannot be opened'
expect_fault PUT /drives/rootfs "{\"drive_id\":\"other\",\"path_on_host\":\"$ROOTFS\",\"is_root_device\":true,\"is_read_only\":false}" \
	'id from the path does not match'
expect_fault PUT /drives/rootfs "{\"drive_id\":\"rootfs\",\"path_on_host\":\"$ROOTFS\",\"is_root_device\":\"yes\"}" \
	'expected a boolean'
expect_fault PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$KERNEL\"}" 'Address already in use'
pass "validation rejects bad bodies with fault_message"

expect 204 PUT /machine-config '{"vcpu_count":2,"mem_size_mib":256}'
expect 200 GET /machine-config
[[ $BODY == *'"vcpu_count":2'* && $BODY == *'"mem_size_mib":256'* ]] || fail "machine-config: $BODY"
expect 204 PUT /boot-source "{\"kernel_image_path\":\"$KERNEL\",\"boot_args\":\"console=ttyS0 reboot=k\"}"
expect 204 PUT /drives/rootfs "{\"drive_id\":\"rootfs\",\"path_on_host\":\"$ROOTFS\",\"is_root_device\":true,\"is_read_only\":false}"
expect 204 PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$T/vm1.vsock\"}"
[ -S "$T/vm1.vsock" ] || fail "PUT /vsock did not create the socket"
expect 204 PUT /actions '{"action_type":"InstanceStart"}'
expect 200 GET /
[[ $BODY == *'"state":"Running"'* ]] || fail "state after start: $BODY"
pass "machine-config, boot-source, drives, vsock, InstanceStart all 204"

expect_fault PUT /machine-config '{"vcpu_count":1,"mem_size_mib":128}' 'not supported after starting the microVM'
expect_fault PUT /actions '{"action_type":"InstanceStart"}' 'not supported after starting the microVM'
expect 204 PATCH /vm '{"state":"Paused"}'
expect 200 GET /
[[ $BODY == *'"state":"Paused"'* ]] || fail "state after pause: $BODY"
expect 204 PATCH /vm '{"state":"Resumed"}'
expect_fault PATCH /vm '{"state":"Stopped"}' 'unknown variant `Stopped`'
pass "pre-boot-only calls refused after start; pause and resume"

# Every request above is one log line with its status, in order.
python3 - "$RLOG" <<'EOF' || fail "request log does not match the requests"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
want = [("GET", "/", 200)] + [("PUT", "/machine-config", 400)] * 6 + [
    ("PUT", "/actions", 400), ("PUT", "/actions", 400), ("PATCH", "/vm", 400),
    ("PUT", "/boot-source", 400), ("PUT", "/drives/rootfs", 400), ("PUT", "/drives/rootfs", 400),
    ("PUT", "/vsock", 400),
    ("PUT", "/machine-config", 204), ("GET", "/machine-config", 200), ("PUT", "/boot-source", 204),
    ("PUT", "/drives/rootfs", 204), ("PUT", "/vsock", 204), ("PUT", "/actions", 204), ("GET", "/", 200),
    ("PUT", "/machine-config", 400), ("PUT", "/actions", 400), ("PATCH", "/vm", 204), ("GET", "/", 200),
    ("PATCH", "/vm", 204), ("PATCH", "/vm", 400)]
got = [(l["method"], l["path"], l["status"]) for l in lines]
if got != want:
    print("got ", got, "\nwant", want, file=sys.stderr)
    sys.exit(1)
assert lines[0]["body"] is None
assert lines[1]["body"] == {"vcpu_count": 2, "mem_size_mib": 256, "bogus": True}
assert lines[6]["body"] == '{"vcpu_count":2,'   # unparsable bodies are logged as text
EOF
pass "request log has one line per request with its status"

# ---- hybrid vsock -----------------------------------------------------------
got=$(vsock_client "$T/vm1.vsock" 'CONNECT 1024\nhello guest')
[ "$got" = "b'OK 1073741824\\nhello guest'" ] || fail "CONNECT 1024: $got"
got=$(vsock_client "$T/vm1.vsock" 'connect 5000\n')
[ "$got" = "b'OK 1073741825\\n'" ] || fail "second CONNECT did not get the next host port: $got"
got=$(vsock_client "$T/vm1.vsock" 'CONNECT 7\nhello')
[ "$got" = "b''" ] || fail "CONNECT to a closed port: $got"
got=$(vsock_client "$T/vm1.vsock" 'HELLO 1024\n')
[ "$got" = "b''" ] || fail "malformed command: $got"
pass "vsock CONNECT: OK with distinct host ports then echo; refused ports closed without OK"

# ---- SendCtrlAltDel: exits 0 and removes its sockets ----------------------
expect 204 PUT /actions '{"action_type":"SendCtrlAltDel"}'
wait_for 10 exited "$FC_PID" || fail "no exit after SendCtrlAltDel"
wait "$FC_PID"
rc=$?
[ $rc = 0 ] || fail "exit status after SendCtrlAltDel: $rc"
[ -e "$SOCK" ] && fail "API socket left behind"
[ -e "$T/vm1.vsock" ] && fail "vsock socket left behind"
[ -s "$T/vm1.stdout" ] && fail "wrote to stdout: $(cat "$T/vm1.stdout")"
pass "SendCtrlAltDel: exit 0, sockets removed, stdout silent"

# ---- an existing API socket path is refused, and left alone -----------------
: >"$T/taken.sock"
"$FC" --api-sock "$T/taken.sock" 2>/dev/null && fail "an existing API socket path was accepted"
[ -f "$T/taken.sock" ] || fail "a path it did not create was removed"
pass "existing API socket path refused and kept"

# ---- 'never' mode: SendCtrlAltDel ignored, SIGTERM ignored, SIGKILL works -----
start_fc vm2 FC_DOUBLE_CTRLALTDEL_DELAY_MS=never FC_DOUBLE_IGNORE_SIGTERM=1
expect 204 PUT /boot-source "{\"kernel_image_path\":\"$KERNEL\"}"
expect 204 PUT /actions '{"action_type":"InstanceStart"}'
expect 204 PUT /actions '{"action_type":"SendCtrlAltDel"}'
kill -TERM "$FC_PID"
wait_for 10 grep -q 'ignoring SIGTERM' "$T/stderr" || fail "SIGTERM was not seen"
expect 200 GET /	# still answering after both
exited "$FC_PID" && fail "exited despite never/ignore-SIGTERM"
kill -KILL "$FC_PID"
wait_for 10 exited "$FC_PID" || fail "SIGKILL did not stop it"
{ wait "$FC_PID"; } 2>/dev/null
pass "never mode: SendCtrlAltDel and SIGTERM ignored, SIGKILL stops it"

# ---- SIGTERM, crash injection, failure injection ---------------------------
start_fc vm3
kill -TERM "$FC_PID"
wait_for 10 exited "$FC_PID" || fail "no exit after SIGTERM"
wait "$FC_PID"
rc=$?
[ $rc = 0 ] || fail "exit status after SIGTERM: $rc"
[ -e "$SOCK" ] && fail "API socket left behind after SIGTERM"
pass "SIGTERM: exit 0 and socket removed"

start_fc vm4 FC_DOUBLE_EXIT_AFTER_START_MS=50 FC_DOUBLE_FAIL_PATH=/drives/data
expect_fault PUT /drives/data "{\"drive_id\":\"data\",\"path_on_host\":\"$ROOTFS\",\"is_root_device\":false,\"is_read_only\":true}" \
	'fc-double: injected failure'
expect 204 PUT /boot-source "{\"kernel_image_path\":\"$KERNEL\"}"
expect 204 PUT /actions '{"action_type":"InstanceStart"}'
wait_for 10 exited "$FC_PID" || fail "no simulated crash"
wait "$FC_PID"
rc=$?
[ $rc = 1 ] || fail "exit status of the simulated crash: $rc"
pass "FC_DOUBLE_FAIL_PATH and FC_DOUBLE_EXIT_AFTER_START_MS"

# ---- malformed HTTP does not take it down -----------------------------------
start_fc vm5
python3 - "$SOCK" <<'EOF' || fail "garbage HTTP"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
try:
    s.recv(100)
except socket.timeout:
    sys.exit(1)
EOF
expect 200 GET /
expect_fault GET /machine-config/extra '' 'Invalid request method and/or path'
kill -TERM "$FC_PID"
wait_for 10 exited "$FC_PID" || fail "no exit after SIGTERM"
wait "$FC_PID" || fail "vm5 exit status $?"
pass "malformed HTTP answered, server stays up"

echo "PASS: fc-double"
