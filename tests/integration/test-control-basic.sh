#!/usr/bin/env bash
# The control-plane walkthrough over raw JSON-RPC: CIDs and vsock paths on
# create, fork and delete, the lowest free CID reused, vm.list order,
# vsock.allocations and daemon.info, the records on disk agreeing with the
# replies, a clean SIGTERM, the state-directory lock, stale-socket
# replacement after kill -9, and a live socket of another emberd left alone.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_emberd

note "create, fork, delete"
r=$(create web true)
assert_jq "$r" '.result.vsock.guest_cid == 3' "web gets CID 3"
assert_eq "$STATE/vms/web/vsock.sock" "$(jqr "$r" .result.vsock.uds_path)" "web's uds_path"
assert_jq "$r" '.result.status == "created" and .result.owner_uid == 0 and .result.pid == 0' \
	"web is created, owned by root, no process"
[[ -d $STATE/vms/web && -f $STATE/vms/web/vm.json ]] || fail "no $STATE/vms/web/vm.json"

r=$(call vm.fork '{"source":"web","name":"web2","start":false}')
assert_jq "$r" '.result.vsock.guest_cid == 4' "fork web2 gets CID 4"
assert_eq "$STATE/vms/web2/vsock.sock" "$(jqr "$r" .result.vsock.uds_path)" "web2 has its own uds_path"
assert_jq "$r" '.result.parent_vm == "web"' "web2's parent_vm is web"
web_id=$(jqr "$(call_ok vm.inspect '{"name":"web"}')" .id)
assert_jq "$r" ".result.id != \"$web_id\"" "web2 has its own id"

r=$(call vm.delete '{"name":"web"}')
assert_jq "$r" '.result.name == "web" and .result.vsock.guest_cid == 3' "delete answers web's last record"
[[ ! -e $STATE/vms/web ]] || fail "$STATE/vms/web still exists after delete"
assert_jq "$(call_ok vsock.allocations)" '.allocations | has("3") | not' "CID 3 is free after the delete"
assert_jq "$(call vm.inspect '{"name":"web"}')" '.error.code == -32001 and .error.data.kind == "not_found"' \
	"web is gone"

r=$(create api true)
assert_jq "$r" '.result.vsock.guest_cid == 3' "the next vsock VM gets CID 3 back"
r=$(create zed false)
assert_jq "$r" '.result | has("vsock") | not' "a VM without vsock has no vsock object"
r=$(create alpha true)
assert_jq "$r" '.result.vsock.guest_cid == 5' "then CID 5"
assert_jq "$(create api true)" '.error.code == -32002 and .error.data.kind == "already_exists"' \
	"a second api is already_exists"
assert_jq "$(create Bad_Name false)" '.error.code == -32004 and .error.data.kind == "invalid_name"' \
	"an upper-case name is invalid_name"

note "list, allocations, info"
list=$(call_ok vm.list)
assert_jq "$list" '[.vms[].name] == ["alpha", "api", "web2", "zed"]' "vm.list is sorted by name"
allocs=$(call_ok vsock.allocations)
assert_jq "$allocs" '.allocations == {"3": "api", "4": "web2", "5": "alpha"} and .count == 3' \
	"vsock.allocations"
assert_jq "$allocs" '.cid_min == 3 and .cid_max == 4294967294' "default CID range"

info=$(call_ok daemon.info)
assert_jq "$info" ".pid == $EMBERD_PID and .state_dir == \"$STATE\" and .socket == \"$SOCK\"" \
	"daemon.info pid, state_dir, socket"
assert_jq "$info" '.api_version == 1 and (.version | type == "string") and .vms == 4 and .cids_in_use == 3' \
	"daemon.info version, api_version, counts"
assert_jq "$info" '(.backends | length) >= 1 and all(.backends[]; (.name | type == "string")
	and (.available | type == "boolean") and (if .available then has("version") else has("reason") end))' \
	"daemon.info backends"
create boot false >/dev/null
if jq -e 'any(.backends[]; .available)' <<<"$info" >/dev/null; then
	# A backend is there, but the VM has neither image nor kernel.
	assert_jq "$(call vm.start '{"name":"boot"}')" '.error.code == -32011 and .error.data.kind == "invalid_spec"' \
		"vm.start of a VM without a kernel is invalid_spec"
	assert_jq "$(call_ok vm.inspect '{"name":"boot"}')" '.status == "failed" and (.reason | length > 0)' \
		"the failed start is recorded with its reason"
else
	assert_jq "$(call vm.start '{"name":"boot"}')" '.error.code == -32008 and .error.data.kind == "backend_unavailable"' \
		"vm.start without a backend is backend_unavailable"
	assert_jq "$(call_ok vm.inspect '{"name":"boot"}')" '.status == "created"' "a start never attempted leaves the VM created"
fi
assert_jq "$(call vm.delete '{"name":"boot"}')" '.result.name == "boot"' "a VM that failed to start can be deleted"

note "state on disk"
assert_jq "$(jq -c . "$STATE/vsock/cids.json")" \
	".version == 1 and .allocations == $(jq -c .allocations <<<"$allocs")" \
	"cids.json matches vsock.allocations"
for name in $(jq -r '.vms[].name' <<<"$list"); do
	ondisk=$(jq -S -c 'del(.version)' "$STATE/vms/$name/vm.json") || fail "$name/vm.json does not parse"
	assert_jq "$(jq -c . "$STATE/vms/$name/vm.json")" '.version == 1' "$name/vm.json has version 1"
	assert_eq "$(jq -S -c ".vms[] | select(.name == \"$name\")" <<<"$list")" "$ondisk" \
		"$name/vm.json matches vm.list"
done
assert_eq "$(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 | wc -l)" 4 "one directory per VM"
assert_eq 660 "$(stat -c %a "$SOCK")" "the control socket is mode 0660"

note "the state directory lock"
mark=$(log_mark)
spawn_emberd --state-dir "$STATE" --socket "$T/other.sock"
wait_exit "$SPAWNED_PID"
[[ $EXIT_STATUS -ne 0 ]] || fail "a second emberd on the same state dir exited 0"
log_since "$mark" | grep "already" >/dev/null || fail "the second emberd's message does not say 'already'"
pass "a second emberd on the same state dir exits $EXIT_STATUS, saying 'already'"
mark=$(log_mark)
spawn_emberd --state-dir "$STATE" --socket "$SOCK"
wait_exit "$SPAWNED_PID"
[[ $EXIT_STATUS -ne 0 ]] || fail "a second emberd on the same state dir and socket exited 0"
pass "a second emberd on the same state dir and socket exits $EXIT_STATUS"
assert_jq "$(call_ok daemon.info)" ".pid == $EMBERD_PID" "the first emberd still serves"

note "a live socket is not stolen"
mark=$(log_mark)
spawn_emberd --state-dir "$T/state2" --socket "$SOCK"
wait_exit "$SPAWNED_PID"
[[ $EXIT_STATUS -ne 0 ]] || fail "an emberd on another state dir took a live socket and exited 0"
log_since "$mark" | grep "already" >/dev/null || fail "the refusal does not say 'already'"
pass "an emberd on another state dir refuses the live socket (exit $EXIT_STATUS)"
[[ -S $SOCK ]] || fail "the live socket file was removed"
assert_jq "$(call_ok daemon.info)" ".pid == $EMBERD_PID" "the live socket still reaches the first emberd"

note "SIGTERM"
stop_emberd
pass "SIGTERM: exit 0"
[[ ! -e $SOCK ]] || fail "the socket file is still there after SIGTERM"
pass "SIGTERM removes the socket file"

note "restart after kill -9"
start_emberd
assert_eq "$(jq -S -c . <<<"$list")" "$(call_ok vm.list | jq -S -c .)" "vm.list survives a clean restart"
crash_emberd
[[ -S $SOCK ]] || fail "kill -9 did not leave a socket file behind (nothing to test)"
mark=$(log_mark)
start_emberd
pass "a stale socket file is replaced at restart"
log_since "$mark" | grep "stale" >/dev/null || fail "the restart does not log that it removed a stale socket"
assert_eq "$(jq -S -c . <<<"$list")" "$(call_ok vm.list | jq -S -c .)" "vm.list survives kill -9"
assert_jq "$(call_ok vsock.allocations)" '.allocations == {"3": "api", "4": "web2", "5": "alpha"}' \
	"allocations survive kill -9"
stop_emberd
echo "PASS"
