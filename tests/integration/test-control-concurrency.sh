#!/usr/bin/env bash
# Many clients at once: 16 simultaneous vsock creates get 16 distinct CIDs
# 3..18; two creates of one name race to exactly one success; 256
# connections held open at the same time all get their vm.list answered.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_emberd

note "16 clients creating at once"
mkdir -p "$T/c16"
pids=()
for i in $(seq 1 16); do
	create "vm$i" true >"$T/c16/$i" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a create client failed"; done
for i in $(seq 1 16); do
	jq -e '.result.vsock.guest_cid' "$T/c16/$i" >/dev/null || fail "create vm$i: $(cat "$T/c16/$i")"
done
assert_eq "$(seq 3 18 | paste -sd,)" "$(jq -s -c '[.[].result.vsock.guest_cid] | sort | map(tostring) | join(",")' \
	"$T"/c16/* | tr -d '"')" "16 concurrent creates get the unique CIDs 3..18"
assert_jq "$(call_ok vsock.allocations)" \
	'.count == 16 and ([.allocations | to_entries[] | "\(.key)=\(.value)"] | length == 16)' \
	"vsock.allocations holds the 16"
for i in $(seq 1 16); do
	cid=$(jq .result.vsock.guest_cid "$T/c16/$i")
	[[ $(jq -r ".allocations[\"$cid\"]" "$STATE/vsock/cids.json") == "vm$i" ]] ||
		fail "cids.json does not give CID $cid to vm$i"
	[[ $(jq .vsock.guest_cid "$STATE/vms/vm$i/vm.json") == "$cid" ]] ||
		fail "vm$i/vm.json does not record CID $cid"
done
pass "cids.json and every vm.json agree with the replies"

note "two creates of one name at once"
mkdir -p "$T/dup"
for round in $(seq 1 10); do
	create "dup$round" true >"$T/dup/$round.a" &
	a=$!
	create "dup$round" true >"$T/dup/$round.b" &
	b=$!
	wait "$a" || fail "dup client a failed"
	wait "$b" || fail "dup client b failed"
	ok=$(jq -s '[.[] | select(.result)] | length' "$T/dup/$round.a" "$T/dup/$round.b")
	exists=$(jq -s '[.[] | select(.error.data.kind == "already_exists")] | length' \
		"$T/dup/$round.a" "$T/dup/$round.b")
	[[ $ok == 1 && $exists == 1 ]] ||
		fail "round $round: $(cat "$T/dup/$round.a") / $(cat "$T/dup/$round.b")"
done
pass "10 races of two creates of one name: one success and one already_exists each"
assert_jq "$(call_ok vsock.allocations)" '.count == 26' "the losers hold no CID"

note "256 connections at once, each doing vm.list"
# Every client connects first and waits on the gate file (read with
# ignoreeof, like tail -f); the request is appended to the gate once all
# 256 are connected, so they all send while all are open.
mkdir -p "$T/c256"
: >"$T/gate"
fds_before=$(ls /proc/"$EMBERD_PID"/fd | wc -l)
clients=()
for i in $(seq 1 256); do
	: >"$T/c256/$i"
	socat "OPEN:$T/gate,rdonly,ignoreeof!!OPEN:$T/c256/$i,wronly" "UNIX-CONNECT:$SOCK" 2>/dev/null &
	clients+=($!)
done
_ember_pids+=("${clients[@]}")
deadline=$((SECONDS + 20))
while (($(ls /proc/"$EMBERD_PID"/fd | wc -l) < fds_before + 256)); do
	((SECONDS < deadline)) || fail "only $(($(ls /proc/"$EMBERD_PID"/fd | wc -l) - fds_before)) of 256 clients connected within 20 s"
	sleep 0.05
done
pass "256 clients are connected at once"
echo '{"jsonrpc":"2.0","id":256,"method":"vm.list"}' >>"$T/gate"
deadline=$((SECONDS + 30))
while :; do
	answered=$(find "$T/c256" -type f -size +0 | wc -l)
	((answered == 256)) && break
	((SECONDS < deadline)) || fail "only $answered of 256 concurrent vm.list calls were answered within 30 s"
	sleep 0.05
done
bad=0
for i in $(seq 1 256); do
	jq -e '.id == 256 and (.result.vms | length) == 26' "$T/c256/$i" >/dev/null 2>&1 || bad=$((bad + 1))
done
assert_eq 0 "$bad" "all 256 concurrent vm.list calls succeed with the 26 VMs"
kill_mine "${clients[@]}"
wait "${clients[@]}" 2>/dev/null || true
assert_jq "$(call_ok daemon.info)" ".pid == $EMBERD_PID and .vms == 26" "emberd serves after the 256 leave"
stop_emberd
echo "PASS"
