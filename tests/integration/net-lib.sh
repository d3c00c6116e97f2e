# Network namespaces for the networking tests and benches (sourced after
# qemu-lib.sh or lib.sh; not run).
#
# Traffic rule: nothing here reaches a real network. net_setup makes two
# namespaces of the test's own and a veth pair between them:
#
#   $NS_EMBERD  where emberd (and so its TAP devices, nftables table and
#               hypervisors) runs: veth $NET_EMBERD_IF $NET_EMBERD_ADDR/24,
#               default route via the outside end, lo up, and no other
#               interface, so no route to this machine's uplink;
#   $NS_OUTSIDE the "outside world": veth $NET_OUTSIDE_IF $NET_OUTSIDE_ADDR/24
#               (198.51.100.0/24, TEST-NET-2) and lo, nothing else.
#
# The host's own interfaces, routes and firewall are never touched: every
# ip/nft command runs inside one of those namespaces (the veth is created
# inside $NS_EMBERD with its peer moved straight into $NS_OUTSIDE). The EXIT
# trap kills what the test started, then deletes both namespaces (and with
# them the veth and anything emberd left inside).
#
# EMBERD becomes a wrapper that runs the real emberd inside $NS_EMBERD by
# exec (ip netns exec execs too), so the pid the test records is emberd's.

for tool in ip nft; do
	command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] ||
	    { echo "SKIP: $tool not installed (apt-get install iproute2 nftables)"; exit 77; }
done
PATH=$PATH:/usr/sbin:/sbin
# busybox: ping, wget and httpd on the host side (no iputils or curl needed).
NET_BB=$(command -v busybox) ||
    { echo "SKIP: busybox not installed (ping, wget and httpd in the test's namespaces)"; exit 77; }
if [[ $(id -u) -ne 0 ]]; then echo "SKIP: network namespaces need root"; exit 77; fi

NET_TAG=et$$				# unique per test process; not em- (emberd's TAPs)
NS_EMBERD=$NET_TAG-d
NS_OUTSIDE=$NET_TAG-o
NET_EMBERD_IF=$NET_TAG-up		# emberd's "uplink" (in $NS_EMBERD)
NET_OUTSIDE_IF=$NET_TAG-w		# its peer (in $NS_OUTSIDE)
NET_EMBERD_ADDR=198.51.100.2
NET_OUTSIDE_ADDR=198.51.100.1
_net_namespaces=()
_net_pids=()				# servers started in the namespaces

# in_emberd CMD...: CMD inside emberd's namespace; in_outside likewise.
in_emberd() { ip netns exec "$NS_EMBERD" "$@"; }
in_outside() { ip netns exec "$NS_OUTSIDE" "$@"; }

# _net_cleanup: what the test started, then the namespaces. Chained in
# front of the EXIT trap that was set before net-lib.sh was sourced.
_net_cleanup() {
	local ns p
	for p in "${_net_pids[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	"$_net_prev_trap"
	for ns in "${_net_namespaces[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}
if declare -F _qemu_cleanup >/dev/null; then
	_net_prev_trap=_qemu_cleanup
else
	_net_prev_trap=_lib_cleanup
fi
trap _net_cleanup EXIT

# _net_reap_stale: deletes the namespaces of earlier runs whose test process
# is gone (a test killed with SIGKILL runs no trap). A name whose pid is
# alive is left alone, whoever has that pid now.
_net_reap_stale() {
	local ns pid
	while read -r ns _; do
		[[ $ns =~ ^et([0-9]+)-[do]$ ]] || continue
		pid=${BASH_REMATCH[1]}
		[[ $pid != "$$" && ! -e /proc/$pid ]] || continue
		ip netns del "$ns" 2>/dev/null && echo "--- removed $ns, left by a test that was killed"
	done < <(ip netns list 2>/dev/null)
}

# net_setup: both namespaces, the veth between them, addresses and routes.
net_setup() {
	local ns
	_net_reap_stale
	for ns in "$NS_EMBERD" "$NS_OUTSIDE"; do
		ip netns add "$ns" || fail "ip netns add $ns"
		_net_namespaces+=("$ns")
		ip -n "$ns" link set lo up || fail "lo up in $ns"
	done
	ip -n "$NS_EMBERD" link add "$NET_EMBERD_IF" type veth peer name "$NET_OUTSIDE_IF" \
	    netns "$NS_OUTSIDE" || fail "veth between $NS_EMBERD and $NS_OUTSIDE"
	ip -n "$NS_EMBERD" addr add "$NET_EMBERD_ADDR/24" dev "$NET_EMBERD_IF" &&
	    ip -n "$NS_EMBERD" link set "$NET_EMBERD_IF" up &&
	    ip -n "$NS_EMBERD" route add default via "$NET_OUTSIDE_ADDR" ||
	    fail "addressing $NET_EMBERD_IF in $NS_EMBERD"
	ip -n "$NS_OUTSIDE" addr add "$NET_OUTSIDE_ADDR/24" dev "$NET_OUTSIDE_IF" &&
	    ip -n "$NS_OUTSIDE" link set "$NET_OUTSIDE_IF" up ||
	    fail "addressing $NET_OUTSIDE_IF in $NS_OUTSIDE"
	net_wait_ping "$NS_EMBERD" "$NET_OUTSIDE_ADDR" 10 ||
	    fail "$NS_EMBERD cannot ping $NET_OUTSIDE_ADDR over the veth"
	pass "namespaces $NS_EMBERD and $NS_OUTSIDE joined by a veth"
	# emberd inside $NS_EMBERD, same pid (exec all the way down).
	_net_real_emberd=$EMBERD
	EMBERD=$T/emberd-in-netns
	printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS_EMBERD" "$_net_real_emberd" >"$EMBERD"
	chmod 0755 "$EMBERD"
}

# net_wait_ping NS ADDR SECONDS: one ping from NS until it answers.
net_wait_ping() {
	local deadline=$((SECONDS + $3))
	until ip netns exec "$1" "$NET_BB" ping -c1 -W1 "$2" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
	done
}

# net_wait_listen NS PORT SECONDS: until something listens on TCP PORT in NS.
net_wait_listen() {
	local deadline=$((SECONDS + $3))
	until ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q .; do
		((SECONDS < deadline)) || return 1
		sleep 0.05	# poll interval
	done
}

# net_http_server PORT: busybox httpd in the outside namespace serving
# $T/www (index.html holds $NET_PAGE) on $NET_OUTSIDE_ADDR:PORT.
net_http_server() {
	mkdir -p "$T/www"
	NET_PAGE="ember-outside-$$-$RANDOM"
	echo "$NET_PAGE" >"$T/www/index.html"
	in_outside "$NET_BB" httpd -f -p "$NET_OUTSIDE_ADDR:$1" -h "$T/www" &
	_net_pids+=("$!")
	disown "$!"	# killed at exit; no "Killed" job report
	net_wait_listen "$NS_OUTSIDE" "$1" 10 || fail "httpd in $NS_OUTSIDE did not listen on $1"
	pass "HTTP server in $NS_OUTSIDE on $NET_OUTSIDE_ADDR:$1"
}

# net_leftovers WORD...: prints the lines of ip link, ip addr, ip route
# and nft list ruleset in emberd's namespace that contain any WORD (a fixed
# string, as a whole word: 10.100.0.2 does not match 10.100.0.22); nothing
# when the namespace is clean of them.
net_leftovers() {
	local p args=()
	for p in "$@"; do args+=(-e "$p"); done
	{
		in_emberd ip -o link show
		in_emberd ip -o addr show
		in_emberd ip route show
		in_emberd nft list ruleset
	} 2>/dev/null | grep -wF "${args[@]}" || true
}
