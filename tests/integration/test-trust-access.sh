#!/usr/bin/env bash
# Owners reach their own VMs' sockets and consoles, nobody else does; reads
# are private. emberd runs as root with socket_group set to a group this
# test creates; uid 65534 (A) owns a real QEMU guest (TCG) and uid 65533 (B)
# is the other user:
#   - A connects to its VM's vsock.sock (the agent answers a ping), runs a
#     vsock.sock_7100 listener the guest reaches, reads console.log; B gets
#     EACCES on all three (and cannot create a listener);
#   - a symlink A plants at vsock.sock_7101 pointing at a root-only socket
#     does not let the guest reach that socket (reset, logged);
#   - names A plants (console.log, console.log.1, qmp.sock) make emberd
#     write through none of them;
#   - vm.list, vm.inspect, vsock.allocations and daemon.info show A and B
#     only their own VMs, another owner's VM answers exactly like a missing
#     one, root sees all; A's delete leaves no directory and no CID behind.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/vsock-lib.sh"

socket_group_setup embertac sha256sum

UA=65534
UB=65533

printf 'socket_group: %s\n' "$GROUP" >>"$CONFIG"

# as UID CMD...: CMD as UID, a member of the socket group only.
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --groups="$GROUP" -- "$@"; }
ctl_as() { local u=$1; shift; as "$u" "$EMBERCTL" --socket "$SOCK" "$@"; }
rpc_as() {
	printf '%s\n' "$2" | timeout 20 setpriv --reuid="$1" --regid="$1" --groups="$GROUP" \
	    socat -t 15 - "UNIX-CONNECT:$SOCK"
}
req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}"; }

ensure_agent_image
start_emberd

note "A's own image, from files A can read"
mkdir -m 0755 "$T/img" "$T/rootdir"
install -m 0644 "$IMAGE_DIR/vmlinuz" "$IMAGE_DIR/initrd.gz" "$T/img/"
cat >"$T/rootdir/ember-rc" <<'EOF'
#!/bin/sh
r=$(echo hello | ember-agent connect 2 7100 2>&1)
echo "G2H-OWNER rc=$? [$r]"
r=$(echo steal | ember-agent connect 2 7101 2>&1)
echo "G2H-SYMLINK rc=$? [$r]"
EOF
chmod 0755 "$T/rootdir/ember-rc"
out=$(ctl_as "$UA" image import ga --kernel "$T/img/vmlinuz" --initrd "$T/img/initrd.gz" \
    --boot-args "$BOOT_ARGS" --rootfs-dir "$T/rootdir" --rootfs-size 16M 2>&1) ||
    fail "uid $UA image import ga: $out"
out=$(ctl_as "$UA" vm create own --image ga --vsock --no-start 2>&1) ||
    fail "uid $UA vm create own: $out"
D=$STATE/vms/own
S=$D/vsock.sock

note "the VM directory: root's, sticky, open to its owner only"
assert_eq "0:0" "$(stat -c %u:%g "$D")" "$D belongs to root"
[[ $(stat -c %A "$D") == d*t* || $(stat -c %A "$D") == d*T* ]] || fail "$D is not sticky: $(stat -c %A "$D")"
pass "$D is sticky ($(stat -c %A "$D"))"
as "$UA" test -w "$D" -a -x "$D" ||
    { grep -i 'ACL' "$LOG"; echo "SKIP: the filesystem of $T keeps no POSIX ACLs"; exit 77; }
pass "uid $UA may write in $D"
as "$UB" ls "$D" >/dev/null 2>&1 && fail "uid $UB can list $D"
err=$(as "$UB" touch "$D/x" 2>&1) && fail "uid $UB created a file in $D"
grep -q 'Permission denied' <<<"$err" || fail "uid $UB: $err"
pass "uid $UB can neither list nor write $D (EACCES)"
err=$(as "$UB" "$VSOCK_CLIENT" listen "${S}_7199" --timeout 5 2>&1) &&
    fail "uid $UB created a listener in $D: $err"
grep -qi 'permission denied' <<<"$err" || fail "uid $UB's listener failed otherwise: $err"
[[ ! -e ${S}_7199 ]] || fail "${S}_7199 exists"
pass "uid $UB cannot create vsock.sock_7199 (EACCES)"
as "$UA" rm -f "$D/vm.json" 2>/dev/null
[[ -f $D/vm.json ]] || fail "uid $UA removed root's vm.json"
pass "uid $UA cannot remove root's vm.json (sticky)"

note "a root-only service and the names A plants"
mkdir -m 0700 "$T/secret"
printf 'victim-data\n' >"$T/victim"
chmod 0600 "$T/victim"
want_victim=$(sha256sum <"$T/victim")
"$VSOCK_CLIENT" listen "$T/secret/svc.sock" --reply SECRET --timeout 200 >"$T/secret.out" 2>&1 &
secret_pid=$!
_ember_pids+=("$secret_pid")
wait_file_line "$T/secret.out" 'listening on' 10 || fail "secret listener: $(cat "$T/secret.out")"
as "$UA" ln -s "$T/secret/svc.sock" "${S}_7101" || fail "uid $UA cannot plant ${S}_7101"
for n in console.log console.log.1 qmp.sock; do
	as "$UA" ln -s "$T/victim" "$D/$n" || fail "uid $UA cannot plant $D/$n"
done
pass "uid $UA planted symlinks: vsock.sock_7101 -> a root-only socket; console.log, console.log.1, qmp.sock -> a root file"
as "$UA" "$VSOCK_CLIENT" listen "${S}_7100" --reply hi-owner --timeout 200 >"$T/owner.out" 2>&1 &
owner_pid=$!
_ember_pids+=("$owner_pid")
wait_file_line "$T/owner.out" 'listening on' 10 || fail "uid $UA's listener: $(cat "$T/owner.out")"
pass "uid $UA listens on vsock.sock_7100"

note "boot A's VM (started by A)"
out=$(ctl_as "$UA" vm start own 2>&1) || fail "uid $UA vm start own: $out"
await_booted own 0
c=$(console_since own "$BOOT_OFFSET")

assert_eq "$want_victim" "$(sha256sum <"$T/victim")" "the root file behind the planted names is unchanged"
[[ -f $D/console.log && ! -L $D/console.log ]] || fail "console.log is not a regular file"
assert_eq "0" "$(stat -c %u "$D/console.log")" "console.log is emberd's (root's)"
[[ -S $D/qmp.sock && ! -L $D/qmp.sock ]] || fail "qmp.sock is not emberd's socket"
pass "emberd replaced the planted console.log and qmp.sock with its own"

note "the console: the owner reads it, the other user cannot"
as "$UA" grep -q "$READY" "$D/console.log" || fail "uid $UA cannot read its console.log"
pass "uid $UA reads console.log"
err=$(as "$UB" cat "$D/console.log" 2>&1) && fail "uid $UB read $D/console.log"
grep -q 'Permission denied' <<<"$err" || fail "uid $UB: $err"
pass "uid $UB cannot read console.log (EACCES)"

note "vsock.sock: the owner connects, the other user cannot"
assert_eq "0" "$(stat -c %u "$S")" "vsock.sock stays root's"
out=$(as "$UA" "$VSOCK_CLIENT" connect "$S" 1024 --line '{"op":"ping"}' --timeout 20 2>&1) ||
    fail "uid $UA cannot reach its VM's agent: $out"
grep -q '"pong":true' <<<"$out" || fail "uid $UA's ping got: $out"
pass "uid $UA connects to vsock.sock and its agent answers"
err=$(as "$UB" "$VSOCK_CLIENT" connect "$S" 1024 --line '{"op":"ping"}' --timeout 5 2>&1) &&
    fail "uid $UB reached A's vsock.sock: $err"
grep -qi 'permission denied' <<<"$err" || fail "uid $UB failed otherwise: $err"
pass "uid $UB cannot connect to vsock.sock (EACCES)"

note "guest -> host: the owner's listener yes, a planted symlink no"
line=$(grep 'G2H-OWNER' <<<"$c") || fail "no G2H-OWNER on the console: $(tail -n 20 <<<"$c")"
grep -q 'G2H-OWNER rc=0 \[hi-owner\]' <<<"$line" || fail "the guest's connect to 7100 got: $line"
wait_exit "$owner_pid" 20
grep -q "received 'hello'" "$T/owner.out" || fail "A's listener: $(cat "$T/owner.out")"
pass "the guest reached uid $UA's listener: $line"
line=$(grep 'G2H-SYMLINK' <<<"$c") || fail "no G2H-SYMLINK on the console"
grep -q 'G2H-SYMLINK rc=0' <<<"$line" && fail "the guest got through the symlink: $line"
grep -q 'received\|accepted' "$T/secret.out" && fail "the root-only socket saw a connection: $(cat "$T/secret.out")"
grep -qE "guest connection to .*_7101 refused: not a socket of uid $UA" "$LOG" ||
    fail "emberd logged no refusal for _7101"
pass "the symlink to a root-only socket was refused: $line"

note "reads are private"
create rootvm true >/dev/null
rpc_as "$UB" "$(req vm.create '{"name":"bvm","vsock":true,"start":false}')" >/dev/null
r=$(rpc_as "$UA" "$(req vm.list null)")
assert_jq "$r" '[.result.vms[].name] == ["own"]' "uid $UA lists only its own VM"
r=$(rpc_as "$UB" "$(req vm.list null)")
assert_jq "$r" '[.result.vms[].name] == ["bvm"]' "uid $UB lists only its own VM"
assert_jq "$(call_ok vm.list)" '[.vms[].name] == ["bvm","own","rootvm"]' "root lists all three"
for who in "$UA:rootvm" "$UA:bvm" "$UB:own"; do
	u=${who%%:*}
	n=${who#*:}
	for m in vm.inspect vm.start vm.exec; do
		p="{\"name\":\"$n\"}"
		[[ $m == vm.exec ]] && p="{\"name\":\"$n\",\"argv\":[\"true\"]}"
		got=$(rpc_as "$u" "$(req $m "$p")" | jq -c .error)
		ghost=$(rpc_as "$u" "$(req $m "${p//$n/zzghost}")" | jq -c .error | sed "s/zzghost/$n/g")
		[[ $got != null && $got == "$ghost" ]] ||
		    fail "uid $u $m $n answered $got; a missing VM answers $ghost"
	done
done
pass "another owner's VM answers vm.inspect, vm.start and vm.exec exactly like a missing VM"
r=$(rpc_as "$UA" "$(req vsock.allocations null)")
assert_jq "$r" '[.result.allocations[]] == ["own"] and .result.count == 1' "uid $UA sees only its CID"
assert_jq "$(call_ok vsock.allocations)" '.count == 3' "root sees all three CIDs"
r=$(rpc_as "$UB" "$(req daemon.info null)")
assert_jq "$r" '.result.vms == 1 and .result.cids_in_use == 1' "daemon.info counts only uid $UB's VMs"

note "A stops and deletes its VM: nothing left"
out=$(ctl_as "$UA" vm stop own 2>&1) || fail "uid $UA vm stop own: $out"
out=$(ctl_as "$UA" vm delete own 2>&1) || fail "uid $UA vm delete own: $out"
[[ ! -e $D ]] || fail "$D is still there: $(ls -la "$D")"
assert_jq "$(call_ok vsock.allocations)" '[.allocations[]] | index("own") == null' "own's CID is released"
assert_eq "$want_victim" "$(sha256sum <"$T/victim")" "the root file is still unchanged"
kill_mine "$secret_pid"
stop_emberd
echo "PASS"
