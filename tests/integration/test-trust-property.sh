#!/usr/bin/env bash
# Property: random request streams from two unprivileged users (uids 65534
# and 65533, members of the socket group) and root never cross the owner
# boundary. Each step sends one random request (create, delete, inspect,
# start, stop, pause, resume, fork, exec, cp, list, allocations, info) from
# a random caller on a random name from a small pool, then checks:
#   - a request by a non-root caller naming another owner's VM is answered
#     exactly as the same request naming a VM that does not exist (the
#     whole error object, name substituted);
#   - no VM of another owner changed owner, status or existence;
#   - vm.list, vsock.allocations and daemon.info of each user show exactly
#     that user's VMs (root's view filtered by owner), root sees all.
# The seed is printed (EMBER_PROPERTY_SEED reruns a sequence) and the step
# count bounded (EMBER_PROPERTY_STEPS, default 60). No hypervisor runs:
# starts fail for want of a kernel, which is fine for the property.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

socket_group_setup embertp

UA=65534
UB=65533

printf 'socket_group: %s\n' "$GROUP" >"$T/emberd.yaml"
EMBERD_EXTRA=(--config "$T/emberd.yaml")
start_emberd

SEED=${EMBER_PROPERTY_SEED:-$((RANDOM * 32768 + RANDOM))}
STEPS=${EMBER_PROPERTY_STEPS:-60}
RANDOM=$SEED
note "seed $SEED, $STEPS steps (EMBER_PROPERTY_SEED=$SEED reproduces this run)"

# as UID LINE: one request line as UID (0: root), prints the reply.
as() {
	if [[ $1 == 0 ]]; then
		rpc "$2"
	else
		printf '%s\n' "$2" | timeout 20 setpriv --reuid="$1" --regid="$1" \
		    --groups="$GROUP" socat -t 15 - "UNIX-CONNECT:$SOCK"
	fi
}
req() { echo "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"$1\",\"params\":$2}"; }

# root_view: {name: {owner, status}} of every VM.
root_view() {
	as 0 "$(req vm.list null)" | jq -c '[.result.vms[] | {key: .name,
	    value: {owner: .owner_uid, status: .status}}] | from_entries'
}

NAMES=(p0 p1 p2 p3 p4 p5)
CALLERS=("$UA" "$UB" "$UA" "$UB" 0)
pick() { local -n arr=$1; echo "${arr[RANDOM % ${#arr[@]}]}"; }
bool() { ((RANDOM % 2)) && echo true || echo false; }

# random_request NAME: prints "METHOD PARAMS" naming NAME (or none).
random_request() {
	local n=$1 other
	other=$(pick NAMES)
	case $((RANDOM % 14)) in
	0|1|2) echo "vm.create {\"name\":\"$n\",\"vsock\":$(bool),\"start\":false}" ;;
	3) echo "vm.delete {\"name\":\"$n\",\"force\":$(bool)}" ;;
	4) echo "vm.inspect {\"name\":\"$n\"}" ;;
	5) echo "vm.start {\"name\":\"$n\"}" ;;
	6) echo "vm.stop {\"name\":\"$n\",\"force\":$(bool)}" ;;
	7) echo "vm.pause {\"name\":\"$n\"}" ;;
	8) echo "vm.resume {\"name\":\"$n\"}" ;;
	9) echo "vm.fork {\"source\":\"$n\",\"name\":\"$other\",\"start\":false}" ;;
	10) echo "vm.exec {\"name\":\"$n\",\"argv\":[\"true\"],\"timeout_s\":2}" ;;
	11) echo "vm.cp {\"name\":\"$n\",\"path\":\"/etc/hostname\",\"direction\":\"out\"}" ;;
	12) echo "vm.list null" ;;
	13) echo "vsock.allocations null" ;;
	esac
}

# check_views VIEW: every caller's list, allocations and counts match VIEW.
check_views() {
	local view=$1 u want got alloc info
	for u in "$UA" "$UB" 0; do
		want=$(jq -c --argjson u "$u" '[to_entries[] | select($u == 0 or .value.owner == $u)
		    | .key] | sort' <<<"$view")
		got=$(as "$u" "$(req vm.list null)" | jq -c '[.result.vms[].name] | sort')
		[[ $got == "$want" ]] || fail "step $step: uid $u lists $got, owns $want"
		alloc=$(as "$u" "$(req vsock.allocations null)")
		jq -e --argjson w "$want" '[.result.allocations[]] - $w == [] and
		    .result.count == (.result.allocations | length)' <<<"$alloc" >/dev/null ||
		    fail "step $step: uid $u sees CIDs of VMs it does not own: $alloc (owns $want)"
		info=$(as "$u" "$(req daemon.info null)")
		jq -e --argjson w "$want" '.result.vms == ($w | length)' <<<"$info" >/dev/null ||
		    fail "step $step: uid $u: daemon.info counts $(jqr "$info" .result.vms) VMs, owns $want"
	done
}

crossings=0
after=$(root_view)
for ((step = 1; step <= STEPS; step++)); do
	caller=$(pick CALLERS)
	name=$(pick NAMES)
	read -r method params <<<"$(random_request "$name")"
	before=$after
	reply=$(as "$caller" "$(req "$method" "$params")") ||
	    fail "step $step: no reply to $method $params from uid $caller"
	owner=$(jq -r --arg n "$name" '.[$n].owner // empty' <<<"$before")
	# Which VM the request names for the ownership check (create names a new one).
	case $method in
	vm.create|vm.list|vsock.allocations) named= ;;
	*) named=$name ;;
	esac
	if [[ -n $named && -n $owner && $caller != 0 && $owner != "$caller" ]]; then
		crossings=$((crossings + 1))
		ghost_params=${params//\"$name\"/\"zz-ghost\"}
		ghost=$(as "$caller" "$(req "$method" "$ghost_params")")
		a=$(jq -c '.error' <<<"$reply")
		b=$(jq -c '.error' <<<"$ghost" | sed "s/zz-ghost/$name/g")
		[[ $a != null && $a == "$b" ]] ||
		    fail "step $step: uid $caller $method on $name (uid $owner's) answered $a; a missing VM answers $b"
	fi
	after=$(root_view)
	if [[ $caller != 0 ]]; then
		# Nothing of another owner's changed: same names, owners, statuses.
		jq -e --argjson a "$after" --argjson u "$caller" '
		    [to_entries[] | select(.value.owner != $u)] ==
		    [$a | to_entries[] | select(.value.owner != $u)]' <<<"$before" >/dev/null ||
		    fail "step $step: uid $caller's $method $params changed another owner's VMs: $before -> $after"
	fi
	jq -e --argjson b "$before" '[to_entries[] | select($b[.key] != null and
	    $b[.key].owner != .value.owner)] == []' <<<"$after" >/dev/null ||
	    fail "step $step: a VM changed owner: $before -> $after"
	((step % 15 == 0 || step == STEPS)) && check_views "$after"
done
pass "$STEPS random requests from uids $UA, $UB and root; $crossings named another owner's VM and were answered as for a missing VM"
n=$(root_view | jq 'length')
pass "$n VMs at the end, owners: $(root_view | jq -c '[.[].owner] | group_by(.) | map({(.[0] | tostring): length}) | add')"
stop_emberd
echo "PASS"
