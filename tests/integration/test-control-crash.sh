#!/usr/bin/env bash
# Crash safety and startup repair of the state directory.
#
# Five rounds: a client pipelines a stream of vsock creates and deletes,
# emberd is killed with SIGKILL after a random number of replies, restarted,
# and the state must be whole: every vm.json parses, cids.json and the
# records agree both ways, no CID is held twice, vm.list matches the
# directories, and nothing half-written (.trash-*, temp files) is left.
# Then hand-made damage, one kind per restart, each repaired as API.md says.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# check_state WHAT: the invariants above, on the disk and through the API
# (one jq program over every record, so it stays fast with many VMs).
check_state() {
	local what=$1 list api recs dirs problems leftovers
	wait_no_trash	# removed off the loop, after the start; first, so no find below meets a directory vanishing
	list=$(call_ok vm.list)
	api=$(call_ok vsock.allocations | jq -c .allocations)
	jq -e '.allocations | type == "object"' "$STATE/vsock/cids.json" >/dev/null 2>&1 ||
		fail "$what: cids.json does not parse"
	dirs=$(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)
	recs=$(shopt -s nullglob; files=("$STATE"/vms/*/vm.json)
		jq -n -c '[inputs | . + {dir: (input_filename | split("/") | .[-2])}]' "${files[@]}" 2>&1) ||
		fail "$what: a vm.json does not parse: $recs"
	printf '%s' "$recs" >"$T/check-recs.json"
	printf '%s' "$list" >"$T/check-list.json"
	problems=$(jq -n -r --slurpfile recs1 "$T/check-recs.json" --slurpfile cids "$STATE/vsock/cids.json" \
		--slurpfile list1 "$T/check-list.json" --argjson api "$api" --arg state "$STATE" --argjson dirs "$dirs" '
		($recs1[0]) as $recs | ($list1[0]) as $list | ($cids[0].allocations) as $a
		| ($recs | map(select(.vsock)) | map({key: .name, value: .vsock.guest_cid}) | from_entries) as $rc
		| ($recs[] | select(.name != .dir) | "\(.dir)/vm.json names \(.name)"),
		  ($recs[] | select(.vsock) | select($a[.vsock.guest_cid | tostring] != .name)
			| "\(.name) records CID \(.vsock.guest_cid), cids.json gives it to \($a[.vsock.guest_cid | tostring])"),
		  ($recs[] | select(.vsock) | select(.vsock.uds_path != "\($state)/vms/\(.name)/vsock.sock")
			| "\(.name) has uds_path \(.vsock.uds_path)"),
		  ($a | to_entries[] | select($rc[.value] != (.key | tonumber))
			| "CID \(.key) is held by \(.value), which is missing or records another CID"),
		  (if ([$a[]] | length) != ([$a[]] | unique | length) then "a VM holds two CIDs: \($a)" else empty end),
		  (if ([$recs[].vsock.guest_cid // empty] | length) != ([$recs[].vsock.guest_cid // empty] | unique | length)
			then "two VMs record the same CID" else empty end),
		  (if ($list.vms | length) != $dirs then "vm.list has \($list.vms | length) VMs, \($dirs) directories exist" else empty end),
		  (if ($recs | length) != $dirs then "\($dirs) directories but \($recs | length) vm.json files" else empty end),
		  ($list.vms[] | select(.status == "failed") | "\(.name) lists as failed: \(.reason)"),
		  (if ($api | to_entries | sort) != ($a | to_entries | sort) then "vsock.allocations differs from cids.json" else empty end)
		') || fail "$what: the consistency check itself failed"
	[[ -z $problems ]] || fail "$what: $problems"
	leftovers=$(rfind "$STATE" \( -name '.trash-*' -o -name '.*.tmp.*' \) -print)
	[[ -z $leftovers ]] || fail "$what: left behind: $leftovers"
	pass "$what: state consistent ($dirs VMs, $(jq length <<<"$api") CIDs)"
}

start_emberd

note "kill -9 in the middle of creates and deletes"
RANDOM=$$
for round in 1 2 3 4 5; do
	# Creates of fresh names, each followed by a delete of an older VM
	# (from this round or the previous ones), so CIDs are freed and reused.
	old=($(call_ok vm.list | jq -r '.vms[].name'))
	{
		for j in $(seq 1 300); do
			echo "{\"jsonrpc\":\"2.0\",\"id\":$j,\"method\":\"vm.create\",\"params\":{\"name\":\"r${round}n$j\",\"vsock\":true,\"start\":false}}"
			if ((j % 2 == 0)); then
				victim=r${round}n$((j - 1))
			elif ((${#old[@]} > 0)); then
				victim=${old[0]}
				old=("${old[@]:1}")
			else
				continue
			fi
			echo "{\"jsonrpc\":\"2.0\",\"id\":\"d$j\",\"method\":\"vm.delete\",\"params\":{\"name\":\"$victim\"}}"
		done
	} >"$T/stream"
	: >"$T/stream.out"
	socat -t 30 - "UNIX-CONNECT:$SOCK" <"$T/stream" >"$T/stream.out" 2>/dev/null &
	client=$!
	_ember_pids+=("$client")
	after=$((RANDOM % 200 + 10))
	deadline=$((SECONDS + 30))
	while (($(wc -l <"$T/stream.out") < after)); do
		((SECONDS < deadline)) || fail "round $round: only $(wc -l <"$T/stream.out") replies in 30 s"
		alive "$client" || break
		sleep 0.002
	done
	crash_emberd
	wait "$client" 2>/dev/null || true
	note "round $round: killed after $(wc -l <"$T/stream.out") replies (target $after)"
	start_emberd
	check_state "round $round"
done

note "hand-made damage"
for n in keep1 keep2 broken; do create "$n" true >/dev/null; done
create novs false >/dev/null
check_state "before damage"
cid_of() { call_ok vm.inspect "{\"name\":\"$1\"}" | jq .vsock.guest_cid; }
keep1=$(cid_of keep1)
keep2=$(cid_of keep2)
broken=$(cid_of broken)
cids=$STATE/vsock/cids.json
# The CID table the records describe: {"cid": "name", ...}.
records_cids() {
	jq -n -c '[inputs | select(.vsock) | {key: (.vsock.guest_cid | tostring), value: .name}] | from_entries' \
		"$STATE"/vms/*/vm.json
}
edit_cids() { jq -c "$1" "$cids" >"$T/cids.new" && mv "$T/cids.new" "$cids"; }

# A VM whose cids.json entry is missing gets its CID back.
crash_emberd
edit_cids "del(.allocations[\"$keep1\"])"
mark=$(log_mark)
start_emberd
assert_eq keep1 "$(call_ok vsock.allocations | jq -r ".allocations[\"$keep1\"]")" \
	"keep1 gets CID $keep1 back after its entry vanished"
log_since "$mark" | grep 'repair.*keep1' >/dev/null || fail "the log does not mention the repair of keep1"
pass "the log mentions keep1's repair"
check_state "after a missing entry"

# An allocation for a VM that does not exist is released.
crash_emberd
edit_cids '.allocations["999"] = "ghost"'
mark=$(log_mark)
start_emberd
assert_jq "$(call_ok vsock.allocations)" '.allocations | has("999") | not' "ghost's CID 999 is released"
log_since "$mark" | grep 'repair.*ghost' >/dev/null || fail "the log does not mention ghost's CID"
check_state "after a ghost allocation"

# keep2's entry is missing and a ghost holds its CID: the ghost's claim is
# void, so keep2 must get its own CID back (a guest's CID must not change).
crash_emberd
edit_cids "del(.allocations[\"$keep2\"]) | .allocations[\"$keep2\"] = \"ghost2\""
start_emberd
assert_eq "$keep2" "$(cid_of keep2)" "keep2 keeps CID $keep2 when only a ghost held it"
check_state "after a ghost holding a live VM's CID"

# A directory without vm.json is a create that never finished.
crash_emberd
mkdir -p "$STATE/vms/halfmade"
echo junk >"$STATE/vms/halfmade/disk.img"
start_emberd
[[ ! -e $STATE/vms/halfmade ]] || fail "vms/halfmade (no vm.json) was not removed"
assert_jq "$(call vm.inspect '{"name":"halfmade"}')" '.error.data.kind == "not_found"' \
	"a directory without vm.json is removed and not listed"
check_state "after a half-made directory"

# Leftovers of a crash inside an atomic write or a delete.
crash_emberd
echo '{"half' >"$STATE/vms/keep1/.vm.json.tmp.AbC123"
echo '{"half' >"$STATE/vsock/.cids.json.tmp.XyZ789"
mkdir -p "$STATE/vms/.trash-gone-1234"
echo junk >"$STATE/vms/.trash-gone-1234/vm.json"
start_emberd
wait_no_trash
assert_eq "" "$(rfind "$STATE" -name '.trash-*')" "an interrupted delete's .trash- directory is removed"
assert_eq "" "$(rfind "$STATE" -name '.*.tmp.*')" "temp files of interrupted atomic writes are removed"
check_state "after leftovers"

# An unreadable vm.json lists as failed with a reason; emberd keeps serving.
crash_emberd
echo '{"name": "broken", "status": ' >"$STATE/vms/broken/vm.json"
start_emberd
r=$(call_ok vm.inspect '{"name":"broken"}')
assert_jq "$r" '.status == "failed" and (.reason | length > 0)' "a corrupt vm.json lists as failed with a reason"
assert_jq "$(call_ok vm.list)" \
	"[.vms[].name] | contains([\"broken\", \"keep1\", \"keep2\", \"novs\"]) and length == $(ls "$STATE/vms" | wc -l)" \
	"the other VMs still list"
assert_jq "$(call_ok vsock.allocations)" ".allocations[\"$broken\"] == \"broken\"" \
	"the unreadable VM keeps its CID until deleted"
assert_jq "$(call vm.fork '{"source":"broken","name":"child","start":false}')" \
	'.error.data.kind == "invalid_state"' "an unreadable VM cannot be forked"
assert_jq "$(call vm.delete '{"name":"broken"}')" '.result.name == "broken"' "an unreadable VM can be deleted"
assert_jq "$(call_ok vsock.allocations)" ".allocations | has(\"$broken\") | not" "its CID is released"
[[ ! -e $STATE/vms/broken ]] || fail "vms/broken is still there after its delete"
check_state "after a corrupt vm.json"

# A corrupt cids.json is rebuilt from the records.
crash_emberd
echo 'not json at all' >"$cids"
mark=$(log_mark)
start_emberd
assert_jq "$(call_ok vsock.allocations)" ".allocations == $(records_cids)" "a corrupt cids.json is rebuilt from the records"
log_since "$mark" | grep 'rebuilt' >/dev/null || fail "the log does not say cids.json was rebuilt"
jq -e . "$cids" >/dev/null || fail "cids.json was not rewritten"
rm -f "$cids.corrupt"	# kept aside by emberd for inspection
check_state "after a corrupt cids.json"

# A missing cids.json is rebuilt too.
crash_emberd
rm -f "$cids"
start_emberd
assert_jq "$(call_ok vsock.allocations)" ".allocations == $(records_cids)" "a missing cids.json is rebuilt from the records"
check_state "after a missing cids.json"
stop_emberd
echo "PASS"
