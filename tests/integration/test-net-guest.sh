#!/usr/bin/env bash
# Networked guests under QEMU TCG (issue 14), entirely inside network
# namespaces this test makes (net-lib.sh): emberd runs in one, a veth leads
# to another that stands in for the outside world (198.51.100.0/24) with an
# HTTP server in it; nothing reaches this machine's own network.
#
#   a, b (network nat, default policy; a publishes 8080 -> 80 and
#   5353 -> 53/udp):
#     inspect shows mode, TAP, MAC, host and guest addresses, the publish;
#     the agent's info shows the guest address on eth0; the guest's
#     resolv.conf holds the configured DNS servers; the guest pings its
#     gateway; fetches a page from the outside namespace through NAT; a's
#     published port reaches an httpd in a from the outside namespace and
#     from 127.0.0.1 in emberd's namespace; a UDP echo server in a answers
#     through the published UDP port from 127.0.0.1 and emberd's own
#     address (emberd's relay) and from the outside namespace (DNAT), each
#     client its own flow; b cannot reach a, nor a service
#     of emberd's namespace listening on b's gateway address.
#   emberd is killed with kill -9 while a runs, restarted with
#   allow_same_owner: true, and a deleted: nothing of a or b is left in
#   ip link / ip addr / ip route / nft list ruleset.
#   c, d (allow_same_owner): c reaches d and d reaches c; after deleting
#   both, nothing of them is left either. e (user mode, a malformed
#   ember.net= in its boot args): its init logs why and leaves eth0 down.
#
# Skips (77) when the host side is missing (emberd or emberctl refuses
# --network nat), without root, or without QEMU, busybox, ip or nft.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/qemu-lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/net-lib.sh"

HTTP_PORT=8000			# the outside namespace's server
PUBLISHED=8080			# a's published host port (-> guest port 80)
UDP_PUBLISHED=5353		# a's published UDP host port (-> guest port 53)
UDP_ECHO=$BUILD/tests/fakes/udp-echo	# static UDP echo server (and client, -q)
HOST_SERVICE_PORT=9999		# a service in emberd's namespace guests must not reach
WAIT_S=150			# vm create --wait: boot plus agent under TCG

write_config() {
	cat >"$CONFIG" <<EOF
qemu:
  accel: tcg
defaults:
  backend: qemu
  memory: 256M
network:
  pool: 10.100.0.0/16
  allow_same_owner: $1
  resolv_conf: $T/resolv.conf
EOF
}

# gexec VM CMD...: vm exec with a bounded timeout; prints the output.
gexec() {
	local vm=$1
	shift
	ctl vm exec "$vm" --timeout 30 -- "$@"
}

# reaches VM ADDR: one ping from VM answered, within three tries (the
# first may wait for ARP on a loaded host).
reaches() {
	local _
	for _ in 1 2 3; do
		gexec "$1" ping -c1 -W5 "$2" >/dev/null 2>&1 && return 0
	done
	return 1
}

# create_net VM [FLAGS...]: vm create --network nat --no-start.
create_net() {
	local vm=$1
	shift
	ctl vm create "$vm" --image mini --vsock --network nat --no-start "$@" >/dev/null ||
	    fail "vm create $vm --network nat $*"
}

# start_all VM...: vm start --wait for all of them at once (TCG boots
# overlap); a VM whose agent does not answer in time gets one forced
# restart (TCG boots hang now and then, see qemu-lib.sh).
start_all() {
	local vm pids=() i=0
	for vm in "$@"; do
		ctl vm start "$vm" --wait "$WAIT_S" >"$T/start-$vm.log" 2>&1 &
		pids+=("$!")
	done
	for vm in "$@"; do
		if wait "${pids[i]}"; then
			pass "$vm is up and its agent answers"
		else
			echo "RETRY: $vm: $(tail -n 1 "$T/start-$vm.log")" \
			    "(console: $(tail -n 1 "$(console_of "$vm")")); restarting it"
			ctl vm stop --force "$vm" >/dev/null || fail "vm stop --force $vm"
			ctl vm start "$vm" --wait "$WAIT_S" >/dev/null ||
			    fail "$vm's agent did not answer, twice"
			pass "$vm is up and its agent answers (second boot)"
		fi
		i=$((i + 1))
	done
}

# addr_of VM FIELD: an address field of vm inspect's network, without /prefix.
addr_of() {
	local v
	v=$(field "$1" ".network.$2 // empty")
	[[ -n $v ]] || fail "$1: vm inspect has no network.$2"
	echo "${v%/*}"
}

# fetch NS URL: the body a busybox wget run in NS gets, retried for 20 s
# (a server just started may not be listening yet).
fetch() {
	local ns=$1 url=$2 deadline=$((SECONDS + 20)) out
	while :; do
		if out=$(ip netns exec "$ns" timeout 10 "$NET_BB" wget -q -O - "$url" 2>/dev/null); then
			echo "$out"
			return 0
		fi
		((SECONDS < deadline)) || return 1
		sleep 0.2	# poll interval
	done
}

# vm_traces VM: the strings that would betray VM in emberd's namespace.
vm_traces() {
	field "$1" '.network.tap // empty'
	addr_of "$1" guest_addr
	addr_of "$1" host_addr
}

# assert_clean WHAT TRACE...: none of the traces in link/addr/route/nft.
assert_clean() {
	local what=$1 left deadline=$((SECONDS + 10))
	shift
	# The rules go through nft, which emberd runs after the hypervisor is
	# gone and does not wait for before answering: polled, with a deadline.
	while left=$(net_leftovers "$@") && [[ -n $left ]] && ((SECONDS < deadline)); do
		sleep 0.05	# poll interval, not synchronisation
	done
	[[ -z $left ]] || fail "$what: left behind in emberd's namespace:"$'\n'"$left"
	pass "$what: nothing of $* in ip link, ip addr, ip route, nft list ruleset"
}

net_setup
net_http_server "$HTTP_PORT"
printf 'nameserver 198.51.100.53\nnameserver 198.51.100.1\n' >"$T/resolv.conf"
write_config false
ensure_image
start_emberd
import_image mini

# Is the host side there? A created-but-not-started VM answers that.
if ! out=$(ctl vm create probe --image mini --network nat --no-start 2>&1); then
	echo "SKIP: this emberd/emberctl has no working --network nat yet: $out"
	exit 77
fi
ctl vm delete probe >/dev/null || fail "vm delete probe"

note "two VMs with network nat, default policy"
[[ -x $UDP_ECHO ]] || fail "$UDP_ECHO is missing (built with the tests)"
create_net a --publish "$PUBLISHED:80" --publish "$UDP_PUBLISHED:53/udp"
create_net b
start_all a b

rec=$(ctl --json vm inspect a) || fail "vm inspect a"
assert_jq "$rec" '.network.mode == "nat"' "a: network.mode is nat"
assert_jq "$rec" '.network.tap | type == "string" and length > 0 and length <= 15' "a: has a TAP name"
assert_jq "$rec" '.network.mac | test("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")' "a: has a MAC"
assert_jq "$rec" '.network.publish | length == 2' "a: two published ports"
assert_jq "$rec" "[.network.publish[] | tostring | test(\"$PUBLISHED\")] | any" "a: a publish names $PUBLISHED"
assert_jq "$rec" "[.network.publish[] | tostring | test(\"$UDP_PUBLISHED\")] | any" "a: a publish names $UDP_PUBLISHED"
A_GUEST=$(addr_of a guest_addr)
A_HOST=$(addr_of a host_addr)
B_GUEST=$(addr_of b guest_addr)
B_HOST=$(addr_of b host_addr)
A_TAP=$(field a .network.tap)
B_TAP=$(field b .network.tap)
[[ $A_GUEST != "$B_GUEST" && $A_TAP != "$B_TAP" ]] || fail "a and b share an address or TAP"
pass "a is $A_GUEST (gateway $A_HOST, $A_TAP), b is $B_GUEST (gateway $B_HOST, $B_TAP)"
in_emberd ip -o addr show dev "$A_TAP" | grep -qF " $A_HOST/" ||
    fail "$A_TAP in emberd's namespace does not carry $A_HOST"
pass "$A_TAP carries the host end $A_HOST"

note "the guest's own view"
rec=$(ctl --json vm inspect a)
assert_jq "$rec" "[.agent.info.interfaces[] | select(.name == \"eth0\") | .addresses[] |
    select(.family == \"inet\" and .address == \"$A_GUEST\" and .prefix == 30)] | length == 1" \
    "a's agent info: eth0 has $A_GUEST/30"
assert_jq "$rec" "[.agent.info.interfaces[] | select(.name == \"eth0\") | .mac] == [.network.mac]" \
    "a's agent info: eth0's MAC is the one inspect shows"
out=$(gexec a ip route show default) || fail "vm exec a ip route"
[[ $out == *"via $A_HOST dev eth0"* ]] || fail "a's default route: '$out', expected via $A_HOST"
pass "a's default route is via $A_HOST"
out=$(gexec a cat /etc/resolv.conf) || fail "vm exec a cat /etc/resolv.conf"
assert_eq $'nameserver 198.51.100.53\nnameserver 198.51.100.1' "$out" "a's resolv.conf lists emberd's resolv_conf servers"

note "reachability"
reaches a "$A_HOST" || fail "a cannot ping its gateway $A_HOST"
pass "a pings its gateway $A_HOST"
out=$(gexec a sh -c "wget -q -O /tmp/page http://$NET_OUTSIDE_ADDR:$HTTP_PORT/ && cat /tmp/page") ||
    fail "a cannot fetch http://$NET_OUTSIDE_ADDR:$HTTP_PORT/ through NAT"
assert_eq "$NET_PAGE" "$out" "a fetches the outside namespace's page through NAT"

gexec a sh -c 'mkdir -p /tmp/www && echo "served-by-a" >/tmp/www/index.html && httpd -p 80 -h /tmp/www' ||
    fail "starting httpd in a"
out=$(fetch "$NS_OUTSIDE" "http://$NET_EMBERD_ADDR:$PUBLISHED/") ||
    fail "the outside namespace cannot reach a's published port $NET_EMBERD_ADDR:$PUBLISHED"
assert_eq served-by-a "$out" "the outside namespace reaches a's httpd on $NET_EMBERD_ADDR:$PUBLISHED"
out=$(fetch "$NS_EMBERD" "http://127.0.0.1:$PUBLISHED/") ||
    fail "127.0.0.1:$PUBLISHED in emberd's namespace does not reach a"
assert_eq served-by-a "$out" "127.0.0.1:$PUBLISHED in emberd's namespace reaches a's httpd"

ctl vm cp "$UDP_ECHO" a:/tmp/udp-echo >/dev/null || fail "vm cp udp-echo to a"
gexec a /tmp/udp-echo -d 53 || fail "starting udp-echo on port 53 in a"
# udp_query NS ADDR MSG: the echo of MSG sent from NS to ADDR:$UDP_PUBLISHED
# (sent again each second without a reply, for 20 s).
udp_query() {
	ip netns exec "$1" "$UDP_ECHO" -q "$2" "$UDP_PUBLISHED" "$3" 20
}
for addr in 127.0.0.1 "$NET_EMBERD_ADDR"; do
	out=$(udp_query "$NS_EMBERD" "$addr" "from-host-$addr") ||
	    fail "$addr:$UDP_PUBLISHED/udp in emberd's namespace gets no reply from a"
	assert_eq "echo:from-host-$addr" "$out" "$addr:$UDP_PUBLISHED/udp in emberd's namespace reaches a's UDP echo (emberd's relay)"
done
out=$(udp_query "$NS_OUTSIDE" "$NET_EMBERD_ADDR" from-outside) ||
    fail "the outside namespace gets no reply from $NET_EMBERD_ADDR:$UDP_PUBLISHED/udp"
assert_eq echo:from-outside "$out" "the outside namespace reaches a's UDP echo on $NET_EMBERD_ADDR:$UDP_PUBLISHED/udp (DNAT)"

note "isolation by default"
if gexec b ping -c1 -W3 "$A_GUEST" >/dev/null 2>&1; then
	fail "b pings a ($A_GUEST) although allow_same_owner is false"
fi
pass "b cannot ping a"
# The same command works where the policy allows it (b to the outside), so
# its failure towards a is the policy's doing.
out=$(gexec b sh -c "timeout 10 wget -q -O /tmp/x http://$NET_OUTSIDE_ADDR:$HTTP_PORT/ && cat /tmp/x") ||
    fail "b cannot fetch the outside page"
assert_eq "$NET_PAGE" "$out" "b fetches the outside page (the control for the next two)"
if gexec b sh -c "timeout 5 wget -q -O /tmp/x http://$A_GUEST:80/" >/dev/null 2>&1; then
	fail "b fetches a's httpd at $A_GUEST:80 although allow_same_owner is false"
fi
pass "b cannot reach a's httpd"
mkdir -p "$T/host-www"
echo host-service >"$T/host-www/index.html"
in_emberd "$NET_BB" httpd -f -p "0.0.0.0:$HOST_SERVICE_PORT" -h "$T/host-www" &
_net_pids+=("$!")
disown "$!"
net_wait_listen "$NS_EMBERD" "$HOST_SERVICE_PORT" 10 || fail "host service did not listen"
if gexec b sh -c "timeout 5 wget -q -O /tmp/x http://$B_HOST:$HOST_SERVICE_PORT/" >/dev/null 2>&1; then
	fail "b reaches a service of emberd's namespace on $B_HOST:$HOST_SERVICE_PORT"
fi
pass "b cannot reach a service listening in emberd's namespace"

note "delete b; kill -9 emberd with a running; restart with allow_same_owner; delete a"
mapfile -t A_TRACES < <(vm_traces a)
mapfile -t B_TRACES < <(vm_traces b)
# The leftover checks below look for these words; here, while b exists,
# they must find it in each of the places they look.
in_emberd ip -o link show | grep -qwF "$B_TAP" || fail "ip link in emberd's namespace does not show $B_TAP"
in_emberd ip -o addr show | grep -qwF "$B_HOST" || fail "ip addr in emberd's namespace does not show $B_HOST"
ruleset=$(in_emberd nft list ruleset) || fail "nft list ruleset in emberd's namespace"
grep -qwF -e "$B_TAP" -e "$B_GUEST" <<<"$ruleset" ||
    fail "nft list ruleset names neither $B_TAP nor $B_GUEST while b runs:"$'\n'"$ruleset"
pass "while b runs, ip link, ip addr and nft list ruleset show it"
ctl vm delete --force b >/dev/null || fail "vm delete --force b"
assert_clean "after deleting b" "${B_TRACES[@]}"
write_config true
restart_emberd
assert_eq running "$(field a .status)" "a is re-adopted after kill -9 + restart"
ctl vm delete --force a >/dev/null || fail "vm delete --force a"
assert_clean "after kill -9, restart and deleting a" "${A_TRACES[@]}"

note "allow_same_owner: true"
create_net c
create_net d
# e: a NIC (user mode) and a malformed ember.net= (prefix 33) of its own.
ctl vm create e --image mini --vsock --network user --no-start \
    --boot-args "$BOOT_ARGS ember.net=10.100.9.2/33,10.100.9.1" >/dev/null ||
    fail "vm create e"
start_all c d e
C_GUEST=$(addr_of c guest_addr)
D_GUEST=$(addr_of d guest_addr)
reaches c "$D_GUEST" || fail "c cannot ping d ($D_GUEST) with allow_same_owner"
pass "c pings d with allow_same_owner"
reaches d "$C_GUEST" || fail "d cannot ping c ($C_GUEST) with allow_same_owner"
pass "d pings c with allow_same_owner"
gexec d sh -c 'mkdir -p /tmp/www && echo "served-by-d" >/tmp/www/index.html && httpd -p 80 -h /tmp/www' ||
    fail "starting httpd in d"
out=$(gexec c sh -c "timeout 10 wget -q -O /tmp/x http://$D_GUEST:80/ && cat /tmp/x") ||
    fail "c cannot fetch d's httpd with allow_same_owner"
assert_eq served-by-d "$out" "c fetches d's httpd with allow_same_owner"
grep -q 'ignoring malformed ember.net=10.100.9.2/33,10.100.9.1: bad prefix 33' "$(console_of e)" ||
    fail "e's console does not say that its ember.net= was ignored"
pass "e's init logged the malformed ember.net= and why"
out=$(gexec e ip -o -4 addr show) || fail "vm exec e ip addr"
[[ $out != *eth0* && $out != *10.100.9.2* ]] || fail "e configured eth0 from a malformed ember.net=: $out"
out=$(gexec e cat /sys/class/net/eth0/operstate) || fail "e has no eth0"
assert_eq down "$out" "e's eth0 stays down"
ctl vm delete --force e >/dev/null || fail "vm delete --force e"
mapfile -t C_TRACES < <(vm_traces c)
mapfile -t D_TRACES < <(vm_traces d)
ctl vm delete --force c >/dev/null || fail "vm delete --force c"
ctl vm delete --force d >/dev/null || fail "vm delete --force d"
assert_clean "after deleting c and d" "${C_TRACES[@]}" "${D_TRACES[@]}"

stop_emberd
echo "PASS: networked guests"
