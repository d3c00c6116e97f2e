#!/usr/bin/env bash
# VM networks, host side, without a guest (Firecracker double): in a network
# namespace this test makes, `vm create --network nat` gives the VM a TAP
# em-* with its /30's host address, emberd's nftables tables with the VM's
# chain and elements, PUT /network-interfaces/eth0 (checked by the double
# against the OpenAPI schema, the TAP opened as Firecracker opens it), an
# ember.net= kernel argument, a published port bound by emberd and shown by
# inspect. 20 VMs get 20 distinct /30s; a taken host port is refused with
# nothing allocated; stop removes TAP, address and rules (the /30 stays),
# delete gives the /30 back; after kill -9 of emberd a restart re-adopts the
# running VM's network, removes a stopped VM's and a stray ember TAP (and
# leaves a foreign em-* interface alone); QEMU gets the TAP as -netdev
# tap,fd=N and a failed create+start gives everything back; a socket_group
# user creates nat VMs but not on a port below 1024; a pool of one /30 refuses the
# second VM with nothing allocated. At the end `ip link`, `ip addr` and
# `nft list ruleset` show nothing of emberd.
set -euo pipefail

if [[ -z ${EMBER_NET_TEST_NS:-} ]]; then
	[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (TAP devices, nftables)"; exit 77; }
	for tool in unshare nft ip; do
		command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
	done
	[[ -c /dev/net/tun ]] || { echo "SKIP: no /dev/net/tun"; exit 77; }
	unshare -n true 2>/dev/null || { echo "SKIP: cannot create a network namespace"; exit 77; }
	# Everything below runs in a fresh network namespace: the host's
	# interfaces and ruleset are never touched.
	exec env EMBER_NET_TEST_NS=1 unshare -n bash "$0" "$@"
fi
ip link set lo up
nft list ruleset >/dev/null 2>&1 || { echo "SKIP: nft cannot list the ruleset here"; exit 77; }

. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"
# A socket group, when the tools for it exist: uid 65534 creates nat VMs too.
GROUP=
if command -v setpriv >/dev/null && command -v groupadd >/dev/null &&
    command -v groupdel >/dev/null; then
	socket_group_setup emnet
	trap '_fc_cleanup; groupdel "$GROUP" 2>/dev/null || true' EXIT
fi
as_nobody() { setpriv --reuid=65534 --regid=65534 --groups="$GROUP" -- "$EMBERCTL" --socket "$SOCK" "$@"; }

# The guests' DNS servers come from this file, never the host's.
printf 'nameserver 2001:db8::53\nnameserver 2001:db8::54\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n' >"$T/resolv.conf"
write_config() {	# write_config [POOL]
	printf 'firecracker:\n  binary: %s\n  require_kvm: false\nnetwork:\n  pool: %s\n  resolv_conf: %s\n' \
		"$FC_DOUBLE" "${1:-10.100.0.0/16}" "$T/resolv.conf" >"$CONFIG"
	[[ -z $GROUP ]] || printf 'socket_group: %s\n' "$GROUP" >>"$CONFIG"
	printf 'log_level: debug\n' >>"$CONFIG"	# QEMU's command line is logged at debug
}
write_config
fc_start_emberd
make_image mini

ember_links() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^em-' || true; }
tap_of() { inspect "$1" | jq -r '.network.tap // empty'; }
ruleset() { nft list ruleset 2>/dev/null; }
allocs() { jq -c '.allocations' "$STATE/network/allocations.json"; }
listening() { timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

note "create --network nat --publish: TAP, address, rules, API request, inspect"
ctl vm create f1 --image mini --network nat --publish 18080:80 --publish 127.0.0.1:15353:53/udp \
	>/dev/null || fail "vm create f1"
rec=$(inspect f1)
tap=$(jqr "$rec" .network.tap)
assert_jq "$rec" '.status == "running" and .network.mode == "nat"' "f1 runs with network nat"
assert_jq "$rec" '.network.host_addr == "10.100.0.1/30" and .network.guest_addr == "10.100.0.2/30"' \
	"f1 has the pool's first /30 (host .1, guest .2)"
assert_jq "$rec" '.network.mac == "02:eb:0a:64:00:02"' "f1's MAC is derived from its address"
assert_jq "$rec" '.network.tap | test("^em-[0-9a-f]{8}$")' "TAP named em-<8 hex>"
assert_jq "$rec" '.network.publish == [
	{host_addr: "0.0.0.0", host_port: 18080, guest_port: 80, proto: "tcp"},
	{host_addr: "127.0.0.1", host_port: 15353, guest_port: 53, proto: "udp"}]' "inspect shows the published ports"
ctl vm list | grep -q '^f1 .*10\.100\.0\.2 18080->80/tcp,15353->53/udp$' ||
	fail "vm list lacks f1's address and ports: $(ctl vm list)"
pass "vm list shows the guest address and published ports"
ip -d link show "$tap" | grep -q 'tun type tap' || fail "$tap is not a TAP: $(ip -d link show "$tap")"
ip link show "$tap" | grep -q 'alias ember:f1' || fail "$tap has no alias ember:f1"
ip -o -4 addr show dev "$tap" | grep -q 'inet 10.100.0.1/30' || fail "$tap lacks 10.100.0.1/30"
ip link show "$tap" | grep -q 'state \(UP\|UNKNOWN\)\|,UP' || fail "$tap is not up"
pass "$tap is a TAP aliased ember:f1 with 10.100.0.1/30, up"
[[ $(cat /proc/sys/net/ipv4/ip_forward) == 1 ]] || fail "ip_forward is off in emberd's namespace"
pass "net.ipv4.ip_forward is on (in the test's namespace only)"
rs=$(ruleset)
grep -q "chain vm-$tap" <<<"$rs" || fail "no chain vm-$tap in: $rs"
grep -q "ip saddr != 10.100.0.2 drop" <<<"$rs" || fail "no anti-spoofing rule"
grep -q "tcp . 18080 : 10.100.0.2 . 80" <<<"$rs" || fail "no DNAT element for 18080"
grep -q "127.0.0.1 . udp . 15353 : 10.100.0.2 . 53" <<<"$rs" || fail "no DNAT element for 15353/udp"
grep -q "masquerade" <<<"$rs" || fail "no masquerade rule"
pass "nft: table inet ember with vm-$tap, ember_nat with the VM's DNAT elements and masquerade"
req=$(jq -c 'select(.path == "/network-interfaces/eth0")' "$(reqlog f1)")
assert_jq "$req" '.method == "PUT" and .status == 204' "PUT /network-interfaces/eth0 answered 204"
assert_jq "$req" ".body == {iface_id: \"eth0\", host_dev_name: \"$tap\", guest_mac: \"02:eb:0a:64:00:02\"}" \
	"network-interfaces body: iface_id, host_dev_name, guest_mac"
boot=$(jq -r 'select(.path == "/boot-source") | .body.boot_args' "$(reqlog f1)")
[[ $boot == *" ember.net=10.100.0.2/30,10.100.0.1,192.0.2.53,192.0.2.54" ]] || fail "boot_args lack ember.net=: $boot"
pass "boot_args end with ember.net=10.100.0.2/30,10.100.0.1,192.0.2.53,192.0.2.54 (the IPv4 DNS of network.resolv_conf, IPv6 ones listed first skipped)"
listening 127.0.0.1 18080 || fail "nothing listens on 127.0.0.1:18080"
pass "emberd holds the published host port (127.0.0.1:18080 accepts)"

note "the double checks the request against the schema"
sock=$T/fc-check.sock
"$FC_DOUBLE" --api-sock "$sock" >>"$LOG" 2>&1 &
dpid=$!
_ember_pids+=("$dpid")
wait_until 10 "the double's socket" test -S "$sock"
fcput() { curl -s --unix-socket "$sock" -X PUT "http://localhost$1" -H 'Content-Type: application/json' -d "$2" -o /dev/null -w '%{http_code}'; }
if command -v curl >/dev/null; then
	ip tuntap add em-0dd0dd00 mode tap
	assert_eq 400 "$(fcput /network-interfaces/eth0 '{"iface_id":"eth1","host_dev_name":"em-0dd0dd00"}')" "path id != iface_id refused"
	assert_eq 400 "$(fcput /network-interfaces/eth0 '{"iface_id":"eth0"}')" "missing host_dev_name refused"
	assert_eq 400 "$(fcput /network-interfaces/eth0 '{"iface_id":"eth0","host_dev_name":"em-0dd0dd00","guest_mac":"02:eb:0a"}')" "malformed guest_mac refused"
	assert_eq 400 "$(fcput /network-interfaces/eth0 '{"iface_id":"eth0","host_dev_name":"em-nothere"}')" "a TAP that does not exist refused"
	assert_eq 400 "$(fcput /network-interfaces/eth0 '{"iface_id":"eth0","host_dev_name":"em-0dd0dd00","x":1}')" "unknown field refused"
	assert_eq 204 "$(fcput /network-interfaces/eth0 '{"iface_id":"eth0","host_dev_name":"em-0dd0dd00","guest_mac":"02:00:00:00:00:01"}')" "a valid request on an existing TAP accepted"
	ip link del em-0dd0dd00
else
	echo "SKIP (part): curl not installed; the double's refusals are not exercised"
fi
{ kill_mine -KILL "$dpid"; wait "$dpid"; } 2>/dev/null || true

note "published ports: taken or duplicate host ports are refused up front, nothing allocated"
before=$(allocs)
out=$(ctl vm create f2 --image mini --network nat --publish 18080:81 2>&1) && fail "a port f1 publishes was accepted"
grep -q 'published by VM "f1"' <<<"$out" || fail "unexpected error: $out"
socat TCP-LISTEN:19090,bind=0.0.0.0,fork /dev/null &
lpid=$!
_ember_pids+=("$lpid")
wait_until 10 "socat listening on 19090" listening 127.0.0.1 19090
out=$(ctl vm create f3 --image mini --network nat --publish 19090:80 2>&1) && fail "a taken port was accepted"
grep -qi 'in use' <<<"$out" || fail "unexpected error: $out"
{ kill_mine -KILL "$lpid"; wait "$lpid"; } 2>/dev/null || true
out=$(ctl vm create f4 --image mini --network nat --publish 80:80x 2>&1) && fail "a malformed publish was accepted"
assert_eq "$before" "$(allocs)" "allocations.json unchanged by the refused creates"
[[ $(call_ok vm.list | jq -c '[.vms[].name] | sort') == '["f1"]' ]] || fail "a refused VM was listed"
pass "refused: port published by another VM, port in use, malformed; none listed"

note "a socket_group user creates a nat VM; a privileged host port is root's"
if [[ -n $GROUP ]]; then
	out=$(as_nobody vm create u1 --image mini --network nat --publish 80:80 2>&1) &&
		fail "uid 65534 published host port 80"
	grep -q 'only root may publish ports below 1024' <<<"$out" || fail "unexpected error: $out"
	as_nobody vm create u1 --image mini --network nat --publish 18090:80 >/dev/null ||
		fail "uid 65534: vm create --network nat"
	assert_jq "$(inspect u1)" '.owner_uid == 65534 and .status == "running" and
		(.network.tap | length) > 0 and .network.publish[0].host_port == 18090' \
		"uid 65534's VM runs with a TAP and its published port"
	as_nobody vm delete u1 --force >/dev/null || fail "uid 65534: vm delete"
	pass "uid 65534: port 80 refused, 18090 published, VM deleted"
else
	echo "SKIP (part): setpriv, groupadd or groupdel missing; no socket_group user"
fi

note "20 VMs get 20 distinct /30s"
for i in $(seq -w 1 20); do
	ctl vm create "n$i" --image mini --network nat >/dev/null || fail "vm create n$i"
done
addrs=$(call_ok vm.list | jq -r '.vms[] | select(.name | startswith("n")) | .network.guest_addr' | sort -u)
assert_eq 20 "$(wc -l <<<"$addrs")" "20 distinct guest addresses"
assert_eq 21 "$(ember_links | wc -l)" "21 TAPs (f1 and 20 more)"
assert_eq 21 "$(ruleset | grep -c '^	chain vm-em-')" "21 per-VM chains"

note "stop removes TAP, address and rules, keeps the /30; start gets it back"
ctl vm stop n01 --force >/dev/null || fail "stop n01"
t01=$(jq -r '.allocations | to_entries[] | select(.value == "n01") | .key' "$STATE/network/allocations.json")
assert_eq 10.100.0.4/30 "$t01" "n01 keeps 10.100.0.4/30 while stopped"
assert_eq 20 "$(ember_links | wc -l)" "n01's TAP is gone"
ip -o -4 addr | grep -q 10.100.0.5/30 && fail "n01's host address is still on some interface"
assert_eq 20 "$(ruleset | grep -c '^	chain vm-em-')" "n01's chain is gone"
ruleset | grep -qw '10\.100\.0\.6' && fail "n01's guest address is still in the ruleset"
ctl vm fork n01 n01f --no-start >/dev/null || fail "fork n01"
assert_jq "$(inspect n01f)" '.network.mode == "nat" and .network.guest_addr != "10.100.0.6/30" and
	.network.publish == []' "a fork of a nat VM gets a /30 of its own, no published ports"
ctl vm delete n01f >/dev/null
ctl vm start n01 >/dev/null || fail "start n01"
assert_jq "$(inspect n01)" '.network.guest_addr == "10.100.0.6/30" and (.network.tap | length) > 0' "n01 restarts on its /30"

note "a hypervisor that dies takes its network with it"
t03=$(tap_of n03)
kill_double -KILL "$(pid_of n03)"
wait_until 10 "n03 to be seen gone" bash -c "[[ \$('$EMBERCTL' --socket '$SOCK' --json vm inspect n03 | jq -r .status) != running ]]"
ip link show "$t03" >/dev/null 2>&1 && fail "n03's TAP $t03 outlived its hypervisor"
wait_until 10 "n03's rules to go" bash -c "! nft list ruleset | grep -q 'vm-$t03'"
pass "n03 crashed: its TAP and rules are gone"

note "delete gives the /30 back; the lowest free one is reused"
ctl vm delete n02 --force >/dev/null || fail "delete n02"
ctl vm create r1 --image mini --network nat --no-start >/dev/null || fail "create r1"
assert_jq "$(inspect r1)" '.network.guest_addr == "10.100.0.10/30" and (.network | has("tap") | not)' \
	"r1 (not started) reuses n02's 10.100.0.8/30 and has no TAP"
for i in $(seq -w 1 20); do ctl vm delete "n$i" --force >/dev/null 2>&1 || true; done
ctl vm delete r1 >/dev/null

note "kill -9 of emberd, a VM that stops meanwhile, a stray TAP, restart"
ctl vm create k1 --image mini --network nat --publish 18081:80 >/dev/null || fail "create k1"
ctl vm create k2 --image mini --network nat >/dev/null || fail "create k2"
k1tap=$(tap_of k1)
k2tap=$(tap_of k2)
k2pid=$(pid_of k2)
kill -KILL "$EMBERD_PID"
wait_exit "$EMBERD_PID"
kill_double -KILL "$k2pid"
wait_until 10 "k2's double to exit" bash -c "! kill -0 $k2pid 2>/dev/null"
ip tuntap add em-5a5a5a5a mode tap
ip link set em-5a5a5a5a alias ember:ghost
ip tuntap add em-f0f0f0f0 mode tap	# not emberd's: no alias
fc_start_emberd
assert_jq "$(inspect k1)" ".status == \"running\" and .network.tap == \"$k1tap\"" "k1 re-adopted with its TAP"
assert_jq "$(inspect k2)" '.status != "running" and (.network | has("tap") | not)' "k2 (its process gone) has no TAP"
ip link show "$k1tap" >/dev/null 2>&1 || fail "k1's TAP was removed"
ip link show "$k2tap" >/dev/null 2>&1 && fail "k2's TAP $k2tap is still there"
ip link show em-5a5a5a5a >/dev/null 2>&1 && fail "the stray ember TAP is still there"
ip link show em-f0f0f0f0 >/dev/null 2>&1 || fail "a foreign em-* interface was removed"
ip link del em-f0f0f0f0
wait_until 10 "the ruleset to be rebuilt" bash -c "nft list ruleset | grep -q 'chain vm-$k1tap'"
ruleset | grep -q "$k2tap" && fail "k2's rules survived the restart"
listening 127.0.0.1 18081 || fail "k1's published port is not served after the restart"
pass "restart: k1's network intact (TAP, rules, port), k2's and the stray TAP removed"
ctl vm delete k2 >/dev/null
ctl vm delete f1 --force >/dev/null

note "QEMU gets the TAP as an fd; a start that fails takes the network back"
if command -v qemu-system-x86_64 >/dev/null; then
	before=$(allocs)
	# The image's kernel is a dummy: QEMU is spawned with the TAP, then fails.
	out=$(ctl vm create q1 --image mini --backend qemu --network nat 2>&1) &&
		fail "QEMU booted a dummy kernel?"
	grep -q -- "qemu: q1: .* -netdev tap,id=net0,fd=[0-9]* -device virtio-net-device,netdev=net0,mac=02:eb:0a:64:.* -append .* ember.net=10.100.0.[0-9]*/30,10.100.0.[0-9]*,192.0.2.53" "$LOG" ||
		fail "QEMU's command line lacks -netdev tap,fd=N, virtio-net-device or ember.net= in -append"
	pass "QEMU: -netdev tap,id=net0,fd=N -device virtio-net-device,...,mac=02:eb:..., ember.net= in -append"
	call vm.inspect '{"name":"q1"}' | jq -e '.error' >/dev/null || fail "q1 survived its failed create+start"
	assert_eq "$before" "$(allocs)" "the failed create+start released its /30"
	assert_eq 1 "$(ember_links | wc -l)" "only k1's TAP is left (q1's is gone)"
else
	echo "SKIP (part): qemu-system-x86_64 not installed; QEMU's TAP fd is not checked"
fi
ctl vm delete k1 --force >/dev/null

note "nothing left"
assert_eq "" "$(ember_links)" "no em-* link"
ip -o -4 addr | grep -q ' 10\.100\.' && fail "an address of the pool is left: $(ip -o -4 addr)"
wait_until 10 "emberd's tables to go" bash -c "! nft list ruleset | grep -q 'table .* ember'"
assert_eq '{}' "$(allocs)" "allocations.json is empty"

note "a tampered allocations.json is repaired at start"
ctl vm create t1 --image mini --network nat --no-start >/dev/null || fail "create t1"
assert_eq '{"10.100.0.0/30":"t1"}' "$(allocs)" "t1 holds 10.100.0.0/30"
kill_mine -TERM "$EMBERD_PID"
wait_exit "$EMBERD_PID"
printf '{"version":1,"allocations":{"10.100.0.0/30":"ghost","10.100.0.4/30":"t1","10.100.0.9/30":"x","junk":"y"}}\n' \
	>"$STATE/network/allocations.json"
fc_start_emberd
assert_eq '{"10.100.0.0/30":"t1"}' "$(allocs)" "ghost released, malformed entries dropped, t1 has its recorded /30 back"
grep -q 'repair: network 10.100.0.0/30 belonged to "ghost"' "$LOG" || fail "the orphan's release was not logged"
ctl vm delete t1 >/dev/null
kill_mine -TERM "$EMBERD_PID"
wait_exit "$EMBERD_PID"
printf 'not json' >"$STATE/network/allocations.json"
fc_start_emberd
[[ -f $STATE/network/allocations.json.corrupt ]] || fail "an unreadable allocations.json was not moved aside"
pass "an unreadable allocations.json is moved aside as .corrupt"

note "a pool of one /30 refuses the second VM with nothing allocated"
kill_mine -TERM "$EMBERD_PID"
wait_exit "$EMBERD_PID"
write_config 10.200.0.0/30
fc_start_emberd
ctl vm create p1 --image mini --network nat --no-start >/dev/null || fail "create p1"
out=$(ctl vm create p2 --image mini --network nat --no-start 2>&1) && fail "p2 got a /30 from a pool of one"
grep -q 'no free /30 in the network pool 10.200.0.0/30' <<<"$out" || fail "unclear error: $out"
pass "p2 refused: $out"
assert_eq '{"10.200.0.0/30":"p1"}' "$(allocs)" "only p1 holds a /30"
call_ok vm.list | jq -e '[.vms[].name] == ["p1"]' >/dev/null || fail "p2 is listed"
ctl vm delete p1 >/dev/null
assert_eq '{}' "$(allocs)" "p1's /30 released"
echo "PASS"
