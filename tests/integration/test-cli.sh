#!/usr/bin/env bash
# emberctl without emberd: argument handling and exit statuses (0 ok,
# 1 error from emberd, 2 usage, 3 unreachable), the unreachable hint, and
# output formatting against a fake emberd (socat + a bash responder that
# answers canned JSON-RPC replies and logs every request line it gets).
set -euo pipefail

EMBERCTL=${EMBERCTL:?set EMBERCTL to the emberctl binary}
unset EMBER_SOCKET
command -v socat >/dev/null || { echo "SKIP: socat not installed"; exit 77; }

dir=$(mktemp -d)
socat_pid=
cleanup() {
	if [[ -n $socat_pid ]]; then
		kill "$socat_pid" 2>/dev/null || true
		wait "$socat_pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# run EXPECTED_STATUS ARGS...: runs emberctl, output in $dir/out and $dir/err.
run() {
	local want=$1 rc=0
	shift
	"$EMBERCTL" "$@" >"$dir/out" 2>"$dir/err" || rc=$?
	if [[ $rc -ne $want ]]; then
		fail "emberctl $* exited $rc, expected $want"
		sed 's/^/  stdout: /' "$dir/out" >&2
		sed 's/^/  stderr: /' "$dir/err" >&2
		return 1
	fi
}
# expect_file FILE TEXT: FILE's content is exactly TEXT.
expect_file() {
	if [[ "$(cat "$1")" != "$2" ]]; then
		fail "unexpected $(basename "$1"); got:"
		sed 's/^/  | /' "$1" >&2
		echo "  expected:" >&2
		printf '%s\n' "$2" | sed 's/^/  | /' >&2
	fi
}
# expect_grep FILE PATTERN: a line of FILE matches the fixed string PATTERN.
expect_grep() {
	if ! grep -qF -- "$2" "$1"; then
		fail "$(basename "$1") lacks '$2'; got:"
		sed 's/^/  | /' "$1" >&2
	fi
}
check() { local what=$1; shift; if "$@"; then pass "$what"; fi; }

# --- no daemon needed -------------------------------------------------------

check "--version" run 0 --version
expect_grep "$dir/out" "emberctl "

check "--help lists verbs and exit statuses" run 0 --help
expect_grep "$dir/out" "vm create NAME"
expect_grep "$dir/out" "exit status"

check "verb --help" run 0 vm stop --help
expect_grep "$dir/out" "usage: emberctl vm stop NAME [--force] [--timeout S]"

check "no verb is a usage error" run 2
check "unknown verb" run 2 frobnicate
expect_grep "$dir/err" "unknown command 'frobnicate'"
check "unknown subverb" run 2 vm frobnicate
check "missing subverb" run 2 vm
check "missing NAME" run 2 vm start
expect_grep "$dir/err" "usage: emberctl vm start NAME"
check "extra argument" run 2 vm start a b
expect_grep "$dir/err" "unexpected argument 'b'"
check "unknown option" run 2 vm list --bogus
expect_grep "$dir/err" "unknown option '--bogus'"
check "option without value" run 2 vm create web --image
check "bad --cpus" run 2 vm create web --cpus two
check "bad --memory" run 2 vm create web --memory 12X
expect_grep "$dir/err" "invalid --memory '12X'"
check "--vsock with --no-vsock" run 2 vm fork a b --vsock --no-vsock
check "bad global --timeout" run 2 --timeout soon vm list
check "rpc with bad JSON params" run 2 --socket "$dir/none.sock" rpc vm.list '{"a":'
expect_grep "$dir/err" "invalid JSON params"
check "rpc with scalar params" run 2 --socket "$dir/none.sock" rpc vm.list 42

# A broken -f file is bad input, not bad usage: status 1 with file:line:col.
printf 'cpus: 2\nmemory: 1G\nbogus: 1\n' >"$dir/bad.yaml"
check "-f with an unknown key" run 1 --socket "$dir/none.sock" vm create web -f "$dir/bad.yaml"
expect_grep "$dir/err" "$dir/bad.yaml:3:1:"

# --- unreachable daemon -----------------------------------------------------

check "missing socket is status 3" run 3 --socket "$dir/missing.sock" vm list
expect_file "$dir/err" "emberctl: cannot reach emberd at $dir/missing.sock: No such file or directory
hint: start it with 'emberd --socket $dir/missing.sock' or set EMBER_SOCKET / --socket"

EMBER_SOCKET="$dir/env.sock" check "EMBER_SOCKET is used" run 3 vm list
expect_grep "$dir/err" "cannot reach emberd at $dir/env.sock:"

EMBER_SOCKET="$dir/env.sock" check "--socket beats EMBER_SOCKET" \
	run 3 --socket "$dir/flag.sock" vm list
expect_grep "$dir/err" "cannot reach emberd at $dir/flag.sock:"

if [[ $(id -u) -ne 0 ]]; then
	XDG_RUNTIME_DIR="$dir/xdg" check "default socket under XDG_RUNTIME_DIR" \
		run 3 daemon info
	expect_grep "$dir/err" "cannot reach emberd at $dir/xdg/ember/emberd.sock:"
fi

# --- a fake emberd ----------------------------------------------------------

cat >"$dir/web.json" <<'EOF'
{"name":"web","id":"0b6f5c1e-3c3e-4d7a-9d1c-2f0e8a3c9b11","status":"running","backend":"qemu","image":"mini","cpus":1,"memory_mib":512,"kernel_path":"/k/vmlinuz","disk_path":"/s/vms/web/disk.qcow2","network":"none","pid":4242,"created_at":"2026-11-29T06:10:00Z","parent_vm":null,"owner_uid":1000,"vsock":{"guest_cid":3,"uds_path":"/s/vms/web/vsock.sock"}}
EOF
cat >"$dir/db.json" <<'EOF'
{"name":"db","id":"9d1c2f0e-3c3e-4d7a-0b6f-5c1e8a3c9b11","status":"stopped","backend":"firecracker","cpus":2,"memory_mib":2048,"network":"user","pid":0,"created_at":"2026-11-29T06:11:00Z","owner_uid":1000}
EOF

cat >"$dir/responder.sh" <<'EOF'
# One connection of the fake emberd (socat forks one per client): read
# request lines, log them, answer from canned JSON by method.
d=$FAKE_DIR
while IFS= read -r line; do
	printf '%s\n' "$line" >>"$d/requests.log"
	id=null method=
	[[ $line =~ \"id\":[[:space:]]*([0-9]+) ]] && id=${BASH_REMATCH[1]}
	[[ $line =~ \"method\":[[:space:]]*\"([^\"]*)\" ]] && method=${BASH_REMATCH[1]}
	ok() { printf '{"jsonrpc":"2.0","id":%s,"result":%s}\n' "$id" "$1"; }
	err() { printf '{"jsonrpc":"2.0","id":%s,"error":{"code":%s,"message":"%s","data":%s}}\n' "$id" "$1" "$2" "$3"; }
	case $method in
	vm.list)
		# A reply to someone else's id first: emberctl must skip it.
		printf '{"jsonrpc":"2.0","id":999,"result":{"vms":[]}}\n'
		ok "{\"vms\":[$(cat "$d/db.json"),$(cat "$d/web.json")]}" ;;
	vm.inspect)
		if [[ $line == *'"ghost"'* ]]; then
			err -32001 'no VM named ghost' '{"kind":"not_found","hint":"see emberctl vm list"}'
		else
			ok "$(cat "$d/web.json")"
		fi ;;
	vm.create)
		if [[ $line == *'"start":false'* ]]; then
			ok "$(sed 's/"running"/"created"/; s/"pid":4242/"pid":0/' "$d/web.json")"
		else
			ok "$(cat "$d/web.json")"
		fi ;;
	vm.stop)
		ok "$(sed 's/"running"/"stopped"/' "$d/web.json")" ;;
	vm.delete)
		err -32003 'web is running' '{"kind":"invalid_state","hint":"stop it first or pass --force"}' ;;
	vsock.allocations)
		ok '{"cid_min":3,"cid_max":4294967294,"count":2,"allocations":{"10":"db","3":"web"}}' ;;
	daemon.info)
		ok '{"version":"0.1.0","api_version":1,"pid":77,"state_dir":"/s","socket":"/x.sock","vms":2,"cids_in_use":2,"backends":[{"name":"qemu","available":true,"version":"8.2.2","binary":"/usr/bin/qemu-system-x86_64"},{"name":"firecracker","available":false,"reason":"firecracker not found in PATH"}]}' ;;
	garbage)
		printf 'this is not json\n' ;;
	hang)
		;;
	no.reason)
		printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"Method not found"}}\n' "$id" ;;
	*)
		err -32601 'Method not found' '{"reason":"no method '"$method"'"}' ;;
	esac
done
EOF

sock="$dir/fake.sock"
FAKE_DIR=$dir socat "UNIX-LISTEN:$sock,fork" "EXEC:bash $dir/responder.sh" &
socat_pid=$!
deadline=$((SECONDS + 10))
until [[ -S $sock ]]; do
	if ((SECONDS > deadline)) || ! kill -0 "$socat_pid" 2>/dev/null; then
		echo "FAIL: the fake emberd did not come up at $sock" >&2
		exit 1
	fi
	sleep 0.05
done
export EMBER_SOCKET=$sock

check "vm list table" run 0 vm list
expect_file "$dir/out" "NAME  STATUS   BACKEND      CPUS  MEMORY  CID
db    stopped  firecracker  2     2G      -
web   running  qemu         1     512M    3"
expect_grep "$dir/requests.log" '"method":"vm.list"'
expect_grep "$dir/requests.log" '"id":1'

check "vm list --json (global)" run 0 --json vm list
expect_grep "$dir/out" '"vms": ['
expect_grep "$dir/out" '"name": "web"'
expect_grep "$dir/out" '"guest_cid": 3'
check "--json after the verb" run 0 vm list --json
expect_grep "$dir/out" '"memory_mib": 2048'

check "vm inspect" run 0 vm inspect web
expect_grep "$dir/out" "status:        running"
expect_grep "$dir/out" "memory:        512M"
expect_grep "$dir/out" "vsock cid:     3"
expect_grep "$dir/out" "vsock uds:     /s/vms/web/vsock.sock"

check "error from emberd is status 1 with its hint" run 1 vm inspect ghost
expect_file "$dir/err" "emberctl: no VM named ghost
hint: see emberctl vm list"

check "vm delete error" run 1 vm delete web
expect_grep "$dir/err" "hint: stop it first or pass --force"

: >"$dir/requests.log"
printf 'cpus: 2\nmemory: 1G\nvsock: true\nimage: mini\n' >"$dir/spec.yaml"
check "vm create: flags over -f over defaults" \
	run 0 vm create --memory 256M web -f "$dir/spec.yaml" --no-start --network user
expect_file "$dir/out" "web: created (cid 3)"
req=$(cat "$dir/requests.log")
for want in '"method":"vm.create"' '"name":"web"' '"cpus":2' '"memory_mib":256' \
	'"vsock":true' '"image":"mini"' '"network":"user"' '"start":false'; do
	[[ $req == *"$want"* ]] || fail "vm.create request lacks $want: $req"
done

check "vm create that boots" run 0 vm create web --vsock
expect_file "$dir/out" "web: created, running (cid 3)"

: >"$dir/requests.log"
check "vm stop --force --timeout" run 0 vm stop web --timeout 5 --force
expect_file "$dir/out" "web: stopped"
expect_grep "$dir/requests.log" '"timeout_s":5'
expect_grep "$dir/requests.log" '"force":true'

check "vsock allocations in CID order" run 0 vsock allocations
expect_file "$dir/out" "CID  OWNER
3    web
10   db"

check "daemon info" run 0 daemon info
expect_grep "$dir/out" "emberd 0.1.0 (api 1), pid 77"
expect_grep "$dir/out" "qemu         available    8.2.2 (/usr/bin/qemu-system-x86_64)"
expect_grep "$dir/out" "firecracker  unavailable  firecracker not found in PATH"

check "version asks emberd too" run 0 version
expect_grep "$dir/out" "emberd 0.1.0 (api 1)"

check "rpc pass-through prints the raw result" run 0 rpc vsock.allocations '{}'
expect_grep "$dir/out" '"cid_max": 4294967294'

check "rpc unknown method is status 1 with the reason" run 1 rpc no.such
expect_grep "$dir/err" "emberctl: Method not found: no method no.such"

check "method not found names the method" run 1 rpc no.reason
expect_file "$dir/err" "emberctl: Method not found: no.reason"

check "malformed reply is status 1" run 1 rpc garbage
expect_grep "$dir/err" "malformed reply from emberd"

check "reply timeout is status 1" run 1 --timeout 0.3 rpc hang
expect_grep "$dir/err" "no reply from emberd to hang within 0.3 s"

if ((failures > 0)); then
	echo "$failures check(s) failed" >&2
	exit 1
fi
echo "all emberctl checks passed"
