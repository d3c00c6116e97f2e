#!/usr/bin/env bash
# Ownership through SO_PEERCRED: the socket is 0660; a caller that is not
# root may create VMs (recorded as its own) and see and change only its
# own (another owner's VM answers as a missing one), while root may change
# anyone's. Needs root (to act as uid 65534 with setpriv).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $(id -u) -ne 0 ]]; then echo "SKIP: needs root"; exit 77; fi
command -v setpriv >/dev/null || { echo "SKIP: setpriv not installed"; exit 77; }

# The socket lives outside the 0700 state directory, in a directory uid
# 65534 can reach.
chmod 0711 "$T"
mkdir -m 0755 "$T/run"
SOCK=$T/run/emberd.sock
start_emberd
assert_eq 660 "$(stat -c %a "$SOCK")" "the control socket is created 0660"
assert_eq "root" "$(stat -c %U "$SOCK")" "the control socket belongs to emberd's user"

# as_nobody LINE: one request as uid/gid 65534.
as_nobody() {
	printf '%s\n' "$1" | timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
		socat -t 15 - "UNIX-CONNECT:$SOCK"
}
req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}"; }

r=$(as_nobody "$(req vm.list null)" 2>&1) && fail "uid 65534 reached a 0660 root socket: $r"
pass "uid 65534 cannot connect to the 0660 socket"

chmod 0666 "$SOCK"	# open it up for the rest of the test
root_vm=$(create rootvm true)
assert_jq "$root_vm" '.result.owner_uid == 0' "root's VM is owned by uid 0"

r=$(as_nobody "$(req vm.list null)")
assert_jq "$r" '.result.vms == []' "uid 65534 does not see root's VM"
ghost=$(as_nobody "$(req vm.delete '{"name":"rootvm-ghost"}')" | jq -c '.error' | sed 's/rootvm-ghost/rootvm/g')
r=$(as_nobody "$(req vm.delete '{"name":"rootvm"}')")
assert_jq "$r" '.error.code == -32001 and .error.data.kind == "not_found"' \
	"uid 65534 deleting root's VM is not_found"
assert_eq "$ghost" "$(jq -c .error <<<"$r")" "the reply is the one a missing VM gets"
r=$(as_nobody "$(req vm.delete '{"name":"rootvm","force":true}')")
assert_jq "$r" '.error.code == -32001' "force does not bypass ownership"
r=$(as_nobody "$(req vm.fork '{"source":"rootvm","name":"stolen","start":false}')")
assert_jq "$r" '.error.code == -32001' "uid 65534 may not fork root's VM"
r=$(as_nobody "$(req vm.start '{"name":"rootvm"}')")
assert_jq "$r" '.error.code == -32001' "uid 65534 may not start root's VM"
assert_jq "$(call_ok vm.inspect '{"name":"rootvm"}')" '.status == "created"' "root's VM is untouched"
[[ -f $STATE/vms/rootvm/vm.json ]] || fail "rootvm's record vanished"
r=$(as_nobody "$(req vm.delete '{"name":"ghost"}')")
assert_jq "$r" '.error.code == -32001' "a missing VM is not_found, not permission_denied"

r=$(as_nobody "$(req vm.create '{"name":"mine","vsock":true,"start":false}')")
assert_jq "$r" '.result.owner_uid == 65534' "uid 65534 creates a VM owned by 65534"
assert_eq 65534 "$(jq .owner_uid "$STATE/vms/mine/vm.json")" "vm.json records owner_uid 65534"
r=$(as_nobody "$(req vm.delete '{"name":"mine"}')")
assert_jq "$r" '.result.name == "mine"' "uid 65534 deletes its own VM"
[[ ! -e $STATE/vms/mine ]] || fail "mine's directory is still there"

as_nobody "$(req vm.create '{"name":"theirs","start":false}')" >/dev/null
r=$(call vm.delete '{"name":"theirs"}')
assert_jq "$r" '.result.name == "theirs" and .result.owner_uid == 65534' "root deletes uid 65534's VM"
stop_emberd
echo "PASS"
