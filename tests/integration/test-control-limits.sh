#!/usr/bin/env bash
# Limits checked before anything is allocated: a vsock UDS path that would
# not fit sun_path with the hypervisor's "_<port>" suffix is path_too_long
# (no CID, no directory), exactly at the 107-byte boundary; a CID range
# from the config file runs out with cids_exhausted and recovers on delete.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

note "path_too_long"
# <state>/vms/<name>/vsock.sock_4294967295 is len(state) + len(name) + 27
# bytes; with a 60-byte state directory a 20-byte name fits exactly.
pad=$((60 - ${#T} - 1))
STATE=$T/$(printf '%*s' "$pad" '' | tr ' ' 's')
SOCK=$T/emberd.sock
assert_eq 60 "${#STATE}" "the state directory path is 60 bytes"
start_emberd
fits=$(printf '%*s' 20 '' | tr ' ' 'f')
long=$(printf '%*s' 21 '' | tr ' ' 'l')

r=$(create "$fits" true)
assert_jq "$r" '.result.vsock.guest_cid == 3' "a 107-byte vsock path (with suffix) is accepted"
assert_eq 96 "$(jqr "$r" .result.vsock.uds_path | tr -d '\n' | wc -c)" "its uds_path is 96 bytes"

r=$(create "$long" true)
assert_jq "$r" '.error.code == -32005 and .error.data.kind == "path_too_long"' \
	"a 108-byte vsock path is path_too_long"
assert_jq "$r" '.error.message | test("108 bytes") and test("107")' "the message gives the length and the limit"
assert_jq "$r" '.error.data.hint | length > 0' "the error says what to do"
assert_jq "$(call_ok vsock.allocations)" '.count == 1 and (.allocations | has("4") | not)' \
	"no CID was allocated for the refused VM"
[[ ! -e $STATE/vms/$long ]] || fail "a directory was created for the refused VM"
pass "no directory was created for the refused VM"
r=$(call vm.fork "{\"source\":\"$fits\",\"name\":\"$long\",\"start\":false}")
assert_jq "$r" '.error.code == -32005' "a fork with vsock to the long name is path_too_long"
assert_jq "$(call_ok vsock.allocations)" '.count == 1' "the refused fork allocated no CID"

r=$(create "$long" false)
assert_jq "$r" '.result.name | length == 21' "the same name without vsock is created"
assert_jq "$r" '.result | has("vsock") | not' "and has no vsock"
r=$(call vm.fork "{\"source\":\"$long\",\"name\":\"${long}x\",\"start\":false}")
assert_jq "$r" '.result | has("vsock") | not' "a fork of a VM without vsock to a longer name works"
stop_emberd

note "cids_exhausted"
STATE=$T/state
SOCK=$STATE/emberd.sock
cat >"$T/emberd.yaml" <<'EOF'
cid_min: 3
cid_max: 4
EOF
EMBERD_EXTRA=(--config "$T/emberd.yaml")
start_emberd
assert_jq "$(call_ok vsock.allocations)" '.cid_min == 3 and .cid_max == 4' "the config file sets the CID range"
assert_jq "$(create a true)" '.result.vsock.guest_cid == 3' "a gets CID 3"
assert_jq "$(create b true)" '.result.vsock.guest_cid == 4' "b gets CID 4"
r=$(create c true)
assert_jq "$r" '.error.code == -32006 and .error.data.kind == "cids_exhausted"' "a third vsock VM is cids_exhausted"
assert_jq "$r" '.error.message | test("3") and test("4")' "the message names the range"
[[ ! -e $STATE/vms/c ]] || fail "a directory was left for the refused VM"
assert_jq "$(call vm.fork '{"source":"a","name":"a2","start":false}')" '.error.code == -32006' \
	"a fork that inherits vsock is cids_exhausted too"
assert_jq "$(create novsock false)" '.result.name == "novsock"' "a VM without vsock is still created"
assert_jq "$(call_ok vm.list)" '[.vms[].name] == ["a", "b", "novsock"]' "the refused VMs are not listed"
call_ok vm.delete '{"name":"a"}' >/dev/null
assert_jq "$(create c true)" '.result.vsock.guest_cid == 3' "after a delete the create works and gets CID 3"
assert_jq "$(jq -c .allocations "$STATE/vsock/cids.json")" '. == {"3": "c", "4": "b"}' "cids.json holds b and c"

# CIDs outside a narrowed range: the VM gets a CID in range, or keeps
# its record without vsock when none is free (see vm_repair_cid).
stop_emberd
cat >"$T/emberd.yaml" <<'EOF'
cid_min: 4
cid_max: 5
EOF
start_emberd
assert_jq "$(call_ok vsock.allocations)" '.cid_min == 4 and .cid_max == 5 and .count == 2' \
	"a narrowed range re-homes the VMs"
assert_jq "$(call_ok vm.inspect '{"name":"c"}')" '.vsock.guest_cid == 5' "c moves from CID 3 to 5"
assert_jq "$(call_ok vm.inspect '{"name":"b"}')" '.vsock.guest_cid == 4' "b keeps CID 4"
stop_emberd
echo "PASS"
