#!/usr/bin/env bash
# Group commit under a kill -9: eight clients pipeline vsock creates and
# deletes (no VM is started) on their own connections, so their state writes
# share batches, and emberd is killed with SIGKILL mid-stream, five times.
# After each restart every acknowledged operation must have survived:
#  - a VM whose create was answered exists, with the CID the answer gave,
#    unless a delete of it was sent later;
#  - a VM whose delete was answered is gone (listed nowhere, no directory);
#  - cids.json and the records agree both ways, no CID is held twice, and
#    nothing half-made (.trash-*, .create-*, temp files, a directory
#    without vm.json) is left.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLIENTS=8
PER_CLIENT=40		# creates per client per round
ROUNDS=5

# check_state WHAT: the state directory and the API agree, CIDs are sane.
check_state() {
	local what=$1 list api recs dirs problems leftovers
	wait_no_trash	# removed off the loop, after the start; first, so no find below meets a directory vanishing
	list=$(call_ok vm.list)
	api=$(call_ok vsock.allocations | jq -c .allocations)
	dirs=$(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l)
	recs=$(shopt -s nullglob; files=("$STATE"/vms/*/vm.json)
		jq -n -c '[inputs | {name, cid: .vsock.guest_cid, dir: (input_filename | split("/") | .[-2])}]' \
		"${files[@]}" 2>&1) || fail "$what: a vm.json does not parse: $recs"
	printf '%s' "$recs" >"$T/check-recs.json"
	printf '%s' "$list" >"$T/check-list.json"
	problems=$(jq -n -r --slurpfile recs1 "$T/check-recs.json" --slurpfile cids "$STATE/vsock/cids.json" \
		--slurpfile list1 "$T/check-list.json" --argjson api "$api" --argjson dirs "$dirs" '
		($recs1[0]) as $recs | ($list1[0]) as $list | ($cids[0].allocations) as $a
		| ($recs | map(select(.cid != null)) | map({key: .name, value: .cid}) | from_entries) as $rc
		| ($recs[] | select(.name != .dir) | "\(.dir)/vm.json names \(.name)"),
		  ($recs[] | select(.cid != null) | select($a[.cid | tostring] != .name)
			| "\(.name) records CID \(.cid), cids.json gives it to \($a[.cid | tostring])"),
		  ($a | to_entries[] | select($rc[.value] != (.key | tonumber))
			| "CID \(.key) is held by \(.value), which is missing or records another CID"),
		  (if ([$recs[].cid // empty] | length) != ([$recs[].cid // empty] | unique | length)
			then "two VMs record the same CID" else empty end),
		  (if ($list.vms | length) != $dirs then "vm.list has \($list.vms | length) VMs, \($dirs) directories exist" else empty end),
		  (if ($recs | length) != $dirs then "\($dirs) directories but \($recs | length) vm.json files" else empty end),
		  ($list.vms[] | select(.status != "created") | "\(.name) is \(.status): \(.reason)"),
		  (if ($api | to_entries | sort) != ($a | to_entries | sort) then "vsock.allocations differs from cids.json" else empty end)
		') || fail "$what: the consistency check itself failed"
	[[ -z $problems ]] || fail "$what: $problems"
	leftovers=$(rfind "$STATE" \( -name '.trash-*' -o -name '.create-*' -o -name '.*.tmp.*' \) -print)
	[[ -z $leftovers ]] || fail "$what: left behind: $leftovers"
	pass "$what: state consistent ($dirs VMs, $(jq length <<<"$api") CIDs)"
}

# check_acked WHAT: every answered create and delete so far is on disk.
# $T/acked.json: {"created": {name: cid}, "deleted": [names], "sent_delete": [names]}
check_acked() {
	local what=$1 list problems
	list=$(call_ok vm.list)
	problems=$(jq -n -r --argjson list "$list" --slurpfile acked "$T/acked.json" --arg vms "$STATE/vms" '
		($acked[0]) as $k
		| ($list.vms | map({key: .name, value: (.vsock.guest_cid // null)}) | from_entries) as $have
		| ($k.sent_delete | map({key: ., value: true}) | from_entries) as $sent
		| ($k.created | to_entries[] | .key as $n | .value as $cid | select($sent[$n] | not)
			| if ($have | has($n) | not) then "acknowledged create of \($n) is lost"
			  elif $have[$n] != $cid then "\($n) was created with CID \($cid), now has \($have[$n])"
			  else empty end),
		  ($k.deleted[] | . as $n | select($have | has($n)) | "acknowledged delete of \($n) is undone")
		') || fail "$what: the acknowledgement check itself failed"
	[[ -z $problems ]] || fail "$what: $problems"
	for n in $(jq -r '.deleted[]' "$T/acked.json"); do
		[[ ! -e $STATE/vms/$n ]] || fail "$what: acknowledged delete of $n left $STATE/vms/$n"
	done
	pass "$what: $(jq '.created | length' "$T/acked.json") acknowledged creates and" \
		"$(jq '.deleted | length' "$T/acked.json") acknowledged deletes hold"
}

# client C ROUND OLD...: one connection, one request at a time (the next
# is sent once the last is answered): create rROUNDcCnJ, and after every
# second create delete the one before it; the OLD VMs (left by earlier
# rounds) are deleted along the way, so CIDs freed in one batch are handed
# out again in the next. Answers go to out.C, delete names to sent.C
# before each delete is sent. Ends when emberd goes.
client() {
	local c=$1 round=$2 j n line victim
	shift 2
	local old=("$@")
	coproc SOCAT { exec socat -t 2 - "UNIX-CONNECT:$SOCK" 2>/dev/null; }
	exec {to}>&"${SOCAT[1]}" {from}<&"${SOCAT[0]}"
	request() {
		printf '%s\n' "$1" >&"$to" 2>/dev/null || return 1
		IFS= read -r line <&"$from" || return 1
		printf '%s\n' "$line" >>"$T/out.$c"
	}
	for j in $(seq 1 "$PER_CLIENT"); do
		n=r${round}c${c}n$j
		request "{\"jsonrpc\":\"2.0\",\"id\":\"c:$n\",\"method\":\"vm.create\",\"params\":{\"name\":\"$n\",\"vsock\":true,\"start\":false}}" || return 0
		victim=
		if ((j % 2 == 0)); then
			victim=r${round}c${c}n$((j - 1))
		elif ((${#old[@]} > 0)); then
			victim=${old[0]}
			old=("${old[@]:1}")
		fi
		[[ -n $victim ]] || continue
		echo "$victim" >>"$T/sent.$c"
		request "{\"jsonrpc\":\"2.0\",\"id\":\"d:$victim\",\"method\":\"vm.delete\",\"params\":{\"name\":\"$victim\"}}" || return 0
	done
}

echo '{"created": {}, "deleted": [], "sent_delete": []}' >"$T/acked.json"
start_emberd
RANDOM=$$
for round in $(seq 1 "$ROUNDS"); do
	# VMs left by earlier rounds: each client deletes a few of them too, so
	# CIDs freed in one batch are handed out again in the next.
	old=($(call_ok vm.list | jq -r '.vms[].name'))
	clients=()
	for c in $(seq 1 "$CLIENTS"); do
		: >"$T/out.$c"
		: >"$T/sent.$c"
		client "$c" "$round" "${old[@]:$(((c - 1) * 4)):4}" &
		clients+=($!)
		_ember_pids+=($!)
	done
	# Kill after a random number of answers over all clients.
	after=$((RANDOM % 200 + 40))
	deadline=$((SECONDS + 30))
	while (($(cat "$T"/out.* | wc -l) < after)); do
		((SECONDS < deadline)) || fail "round $round: only $(cat "$T"/out.* | wc -l) answers in 30 s"
		running=0
		for p in "${clients[@]}"; do alive "$p" && running=1; done
		((running)) || break
		sleep 0.002	# poll interval, not synchronisation
	done
	crash_emberd
	for p in "${clients[@]}"; do wait "$p" 2>/dev/null || true; done
	answers=$(cat "$T"/out.* | wc -l)
	# What was answered (a reply cut by the kill is no answer) and which
	# deletes were sent at all (their outcome is unknown unless answered).
	cat "$T"/out.* | jq -R -c 'fromjson? // empty' >"$T/answers"
	cat "$T"/sent.* >"$T/sent"
	jq -n -c --slurpfile prev "$T/acked.json" --slurpfile ans "$T/answers" --rawfile sent "$T/sent" '
		$prev[0] as $p
		| [$ans[] | select(.result != null)] as $ok
		| {created: ($p.created + ([$ok[] | select(.id | startswith("c:"))
				| {key: .result.name, value: .result.vsock.guest_cid}] | from_entries)),
		   deleted: ($p.deleted + [$ok[] | select(.id | startswith("d:")) | .result.name] | unique),
		   sent_delete: ($p.sent_delete + ($sent | split("\n") | map(select(length > 0))) | unique)}
		' >"$T/acked.new"
	mv "$T/acked.new" "$T/acked.json"
	ncreated=$(jq -s '[.[] | select(.result != null and (.id | startswith("c:")))] | length' "$T/answers")
	ndeleted=$(jq -s '[.[] | select(.result != null and (.id | startswith("d:")))] | length' "$T/answers")
	refused=$(jq -s -r '[.[] | select(.error != null) | .error.data.kind // .error.message]
		| group_by(.) | map("\(.[0]) \(length)") | join(", ")' "$T/answers")
	note "round $round: killed after $answers answers (target $after): $ncreated creates," \
		"$ndeleted deletes acknowledged; refused: ${refused:-none}"
	((ncreated > 0)) || fail "round $round: no create was acknowledged before the kill"
	start_emberd
	check_acked "round $round"
	check_state "round $round"
done

# The writer also answers everything it was given on a clean stop.
stop_emberd
start_emberd
check_acked "after a clean restart"
check_state "after a clean restart"
stop_emberd
echo "PASS"
