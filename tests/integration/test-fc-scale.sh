#!/usr/bin/env bash
# 100 Firecracker VMs created concurrently (10 client loops of 10 emberctl
# calls each): every create succeeds, each VM gets its own CID and its own
# vsock.sock, every socket answers CONNECT on an allowed port, and after
# all are stopped and deleted no CID, directory or process is left.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

N_LOOPS=10
PER_LOOP=10
N=$((N_LOOPS * PER_LOOP))

fc_start_emberd
make_image mini

note "$N creates from $N_LOOPS concurrent clients"
loops=()
for l in $(seq 1 $N_LOOPS); do
	(
		for i in $(seq 1 $PER_LOOP); do
			"$EMBERCTL" --socket "$SOCK" --timeout 60 vm create "s$l-$i" --image mini --vsock \
				>/dev/null 2>>"$T/create-$l.err" || echo "s$l-$i" >>"$T/create-failed"
		done
	) &
	loops+=($!)
done
for p in "${loops[@]}"; do wait_exit "$p" 120; done
[[ ! -s $T/create-failed ]] || fail "creates failed: $(tr '\n' ' ' <"$T/create-failed"): $(cat "$T"/create-*.err)"
pass "all $N creates answered"

list=$(call_ok vm.list)
assert_jq "$list" "(.vms | length) == $N and all(.vms[]; .status == \"running\" and .backend == \"firecracker\")" \
	"$N VMs running on firecracker"
assert_jq "$list" "[.vms[].vsock.guest_cid] | unique | length == $N" "$N distinct CIDs"
assert_jq "$list" "[.vms[].pid] | unique | length == $N" "$N distinct Firecracker pids"
assert_jq "$list" "all(.vms[]; .vsock.uds_path == \"$STATE/vms/\\(.name)/vsock.sock\")" "each VM's socket is in its own directory"
alloc=$(call_ok vsock.allocations)
assert_jq "$alloc" ".count == $N" "vsock.allocations counts $N"
assert_jq "$(jq -c --argjson l "$list" '{a: .allocations, l: $l}' <<<"$alloc")" \
	'.a == (.l.vms | map({key: (.vsock.guest_cid | tostring), value: .name}) | from_entries)' \
	"vsock.allocations matches the records one to one"

for name in $(jqr "$list" '.vms[].name'); do
	# Each Firecracker got exactly its own CID and socket.
	want=$(jq -c --arg n "$name" '.vms[] | select(.name == $n) | .vsock | {guest_cid, uds_path}' <<<"$list")
	got=$(jq -c -s 'map(select(.path == "/vsock"))[0].body' "$(reqlog "$name")")
	[[ $got == "$want" ]] || fail "$name: PUT /vsock body $got, record $want"
	[[ -S $STATE/vms/$name/vsock.sock ]] || fail "$name: no vsock.sock"
	assert_vsock_answers "$name"
done
pass "$N vsock sockets exist, match their records and answer CONNECT 1024"

note "stop and delete all, concurrently"
loops=()
for l in $(seq 1 $N_LOOPS); do
	(
		for i in $(seq 1 $PER_LOOP); do
			{ "$EMBERCTL" --socket "$SOCK" --timeout 60 vm stop "s$l-$i" >/dev/null &&
			  "$EMBERCTL" --socket "$SOCK" --timeout 60 vm delete "s$l-$i" >/dev/null; } \
				2>>"$T/stop-$l.err" || echo "s$l-$i" >>"$T/stop-failed"
		done
	) &
	loops+=($!)
done
for p in "${loops[@]}"; do wait_exit "$p" 120; done
[[ ! -s $T/stop-failed ]] || fail "stop/delete failed: $(tr '\n' ' ' <"$T/stop-failed"): $(cat "$T"/stop-*.err)"
assert_jq "$(call_ok vm.list)" '.vms == []' "no VMs listed"
assert_jq "$(call_ok vsock.allocations)" '.count == 0 and .allocations == {}' "vsock.allocations is empty"
assert_jq "$(cat "$STATE/vsock/cids.json")" '.allocations == {}' "cids.json is empty"
wait_no_trash	# the deletes' trees go in the writer thread, after the answers
left=$(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 | head -5)
[[ -z $left ]] || fail "left in $STATE/vms: $left"
[[ -z $(procs_under "$STATE/vms/") ]] || fail "processes left: $(procs_under "$STATE/vms/")"
pass "all stopped and deleted: nothing left"

stop_emberd
echo "PASS: fc-scale"
