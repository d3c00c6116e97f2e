#!/usr/bin/env bash
# vm.stats, metrics.get and the Prometheus listener, against a root emberd
# whose config sets metrics.listen to 127.0.0.1:<free port> and a socket
# group this test creates; uid 65534 (A) and 65533 (B) are its members:
#   - GET /metrics over HTTP (curl) is text format 0.0.4 that promtool
#     accepts; any other path is 404, POST and a 9000-byte header are
#     refused;
#   - ember_vms by status matches vm list, CIDs in use and free match
#     vsock.allocations, RPC counters grow by the calls made (ok,
#     not_found, invalid_name, unknown method), durable writes and the
#     event-loop lag are observed; a VM name holding quotes or a backslash
#     is refused at vm.create (names are [a-z0-9_.-]), so label escaping
#     is checked by unit_metrics, and promtool reads every scrape here;
#   - A's vm.stats and metrics.get show A's VMs only (B's and root's are
#     neither listed nor counted, and A gets no daemon-wide series); root
#     sees all; naming B's VM answers not_found;
#   - a running TCG guest: vm.stats shows its pid, RSS, uptime, disk,
#     agent ping; CPU seconds grow by >= 0.5 s across a 4 s busy loop run
#     through vm exec; vsock bytes grow by >= 1 MiB each way across a 1 MiB
#     echo; an open connection is counted while it lasts; the agent's
#     latency is measured again once stale; /metrics carries the same
#     per-VM series; once stopped, the process figures are null;
#   - emberd exits cleanly with an HTTP client still connected;
#   - metrics.listen: unix:PATH makes a 0600 socket that serves /metrics
#     and is removed at exit.
set -u
# shellcheck source=tests/integration/vsock-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/vsock-lib.sh"

socket_group_setup embermet curl python3

UA=65534
UB=65533
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
    fail "no free port"
printf 'socket_group: %s\nmetrics:\n  listen: "127.0.0.1:%s"\n' "$GROUP" "$PORT" >>"$CONFIG"
URL=http://127.0.0.1:$PORT

rpc_as() {
	printf '%s\n' "$2" | timeout 20 setpriv --reuid="$1" --regid="$1" --groups="$GROUP" \
	    socat -t 15 - "UNIX-CONNECT:$SOCK"
}
req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":${2:-null}}"; }
ctl_as() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --groups="$GROUP" -- "$EMBERCTL" --socket "$SOCK" "$@"; }

# scrape FILE: GET /metrics into FILE (headers in FILE.h), checked by promtool.
PROMTOOL_SKIPPED=0
scrape() {
	curl -sS --max-time 20 -D "$1.h" -o "$1" "$URL/metrics" || fail "GET /metrics failed"
	head -n 1 "$1.h" | grep -q ' 200' || fail "GET /metrics: $(head -n 1 "$1.h")"
	if command -v promtool >/dev/null; then
		promtool check metrics <"$1" >"$1.promtool" 2>&1 ||
		    fail "promtool check metrics: $(cat "$1.promtool")"
	else
		PROMTOOL_SKIPPED=1
	fi
}
# value FILE SERIES: the sample value of one series line (exact name and
# labels), or 0 when absent.
value() {
	awk -v s="$2" 'index($0, s " ") == 1 { v = $NF } END { print (v == "" ? 0 : v) }' "$1"
}

ensure_agent_image
start_emberd

note "GET /metrics over HTTP"
scrape "$T/m0"
grep -qi '^content-type: text/plain; version=0.0.4' "$T/m0.h" ||
    fail "content type: $(grep -i content-type "$T/m0.h")"
grep -q '^# TYPE ember_vms gauge$' "$T/m0" || fail "no ember_vms family: $(head "$T/m0")"
grep -q '^# HELP ember_rpc_duration_seconds ' "$T/m0" || fail "no RPC latency histogram"
if ((PROMTOOL_SKIPPED)); then
	echo "SKIP (promtool): not installed (Debian package prometheus); format not checked by promtool"
else
	pass "promtool check metrics accepts the exposition"
fi
pass "200 text/plain version=0.0.4, $(wc -l <"$T/m0") lines"
code=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' "$URL/other")
assert_eq 404 "$code" "GET /other"
code=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' "$URL/")
assert_eq 404 "$code" "GET /"
code=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' -X POST --data x "$URL/metrics")
[[ $code == 405 || $code == 400 || $code == 413 ]] || fail "POST /metrics answered $code"
pass "other paths 404, POST refused ($code)"
code=$(curl -s --max-time 20 -o /dev/null -w '%{http_code}' -H "X-Long: $(head -c 9000 /dev/zero | tr '\0' a)" "$URL/metrics")
[[ $code == 400 || $code == 413 || $code == 431 ]] || fail "a 9000-byte header was answered $code"
pass "a request with a 9000-byte header is refused ($code)"

note "VMs of three owners"
mkdir -m 0755 "$T/rootdir"
echo 'echo ember-rc ran' >"$T/rootdir/ember-rc"
chmod 0755 "$T/rootdir/ember-rc"
BOOT_ARGS="$BOOT_ARGS ember.echo=5000"
import_image mini --rootfs-dir "$T/rootdir" --rootfs-size 16M
ctl vm create r1 --image mini --vsock --no-start >/dev/null || fail "vm create r1"
for n in a1 a2; do
	out=$(ctl_as "$UA" vm create "$n" --image mini --vsock --no-start 2>&1) || fail "uid $UA vm create $n: $out"
done
out=$(ctl_as "$UB" vm create b1 --image mini --no-start 2>&1) || fail "uid $UB vm create b1: $out"

scrape "$T/m1"
listed=$(call_ok vm.list | jq '[.vms[] | select(.status == "created")] | length')
assert_eq 4 "$listed" "created VMs in vm list"
assert_eq "$listed" "$(value "$T/m1" 'ember_vms{status="created"}')" "ember_vms{status=\"created\"}"
assert_eq 0 "$(value "$T/m1" 'ember_vms{status="running"}')" "ember_vms{status=\"running\"}"
alloc=$(call_ok vsock.allocations)
assert_eq "$(jqr "$alloc" .count)" "$(value "$T/m1" ember_vsock_cids_in_use)" "ember_vsock_cids_in_use"
assert_eq "$(jqr "$alloc" '.cid_max - .cid_min + 1 - .count')" \
    "$(value "$T/m1" ember_vsock_cids_free)" "ember_vsock_cids_free"
(($(value "$T/m1" ember_durable_write_duration_seconds_count) >= 4)) ||
    fail "durable writes not observed: $(grep durable_write_duration_seconds_count "$T/m1")"
(($(value "$T/m1" 'ember_vm_disk_allocated_bytes{vm="a1"}') > 0)) ||
    fail "a1's disk has no allocated bytes: $(grep disk_allocated "$T/m1")"
pass "ember_vms, CIDs in use and free match vm list and vsock.allocations; durable writes counted"

note "RPC counters grow by the calls made"
scrape "$T/m1"	# afresh: the checks above made calls too
before_ok=$(value "$T/m1" 'ember_rpc_requests_total{method="vm.list",outcome="ok"}')
before_nf=$(value "$T/m1" 'ember_rpc_requests_total{method="vm.inspect",outcome="not_found"}')
before_in=$(value "$T/m1" 'ember_rpc_requests_total{method="vm.create",outcome="invalid_name"}')
before_um=$(value "$T/m1" 'ember_rpc_requests_total{method="unknown",outcome="method_not_found"}')
before_n=$(value "$T/m1" 'ember_rpc_duration_seconds_count{method="vm.list"}')
for _ in 1 2 3; do call_ok vm.list >/dev/null; done
call vm.inspect '{"name":"nosuch"}' | jq -e '.error.data.kind == "not_found"' >/dev/null || fail "inspect nosuch"
r=$(call vm.create '{"name":"q\"uo\\\\te","start":false}')
jq -e '.error.data.kind == "invalid_name"' <<<"$r" >/dev/null || fail "a name with a quote and a backslash: $r"
call 'no.such\"quote\\back' | jq -e '.error.code == -32601' >/dev/null || fail "unknown method"
scrape "$T/m2"
assert_eq $((before_ok + 3)) "$(value "$T/m2" 'ember_rpc_requests_total{method="vm.list",outcome="ok"}')" "vm.list ok"
assert_eq $((before_nf + 1)) "$(value "$T/m2" 'ember_rpc_requests_total{method="vm.inspect",outcome="not_found"}')" "vm.inspect not_found"
assert_eq $((before_in + 1)) "$(value "$T/m2" 'ember_rpc_requests_total{method="vm.create",outcome="invalid_name"}')" "vm.create invalid_name"
assert_eq $((before_um + 1)) "$(value "$T/m2" 'ember_rpc_requests_total{method="unknown",outcome="method_not_found"}')" "unknown method"
assert_eq $((before_n + 3)) "$(value "$T/m2" 'ember_rpc_duration_seconds_count{method="vm.list"}')" "vm.list latency count"
grep -q 'method="no.such' "$T/m2" && fail "a client's method name became a label value"
(($(value "$T/m2" ember_event_loop_lag_seconds_count) > 0)) || fail "no event-loop lag observed"
pass "requests counted by method and outcome, latency histogram counts, loop lag observed"

note "A sees its own VMs only"
r=$(rpc_as "$UA" "$(req vm.stats)")
assert_eq '["a1","a2"]' "$(jq -c '[.result.vms[].name]' <<<"$r")" "uid $UA vm.stats names"
r=$(rpc_as "$UA" "$(req vm.stats '{"name":"b1"}')")
jq -e '.error.data.kind == "not_found"' <<<"$r" >/dev/null || fail "uid $UA vm.stats b1: $r"
r=$(rpc_as "$UA" "$(req vm.stats '{"name":"nosuch"}')")
jq -e '.error.data.kind == "not_found"' <<<"$r" >/dev/null || fail "uid $UA vm.stats nosuch: $r"
r=$(rpc_as "$UA" "$(req metrics.get)")
text=$(jq -r .result.text <<<"$r")
grep -q '^ember_vms{status="created"} 2$' <<<"$text" || fail "uid $UA counts: $(grep ember_vms <<<"$text")"
grep -q '^ember_vsock_cids_in_use 2$' <<<"$text" || fail "uid $UA CIDs: $(grep cids <<<"$text")"
grep -q 'vm="a1"' <<<"$text" || fail "uid $UA does not see a1 in metrics.get"
grep -E 'vm="(b1|r1)"' <<<"$text" && fail "uid $UA sees another owner's VM in metrics.get"
grep -qE '^ember_(rpc|durable|event_loop)|cids_free' <<<"$text" && fail "uid $UA gets daemon-wide series"
r=$(rpc_as "$UB" "$(req vm.stats)")
assert_eq '["b1"]' "$(jq -c '[.result.vms[].name]' <<<"$r")" "uid $UB vm.stats names"
out=$(ctl_as "$UA" vm stats) || fail "uid $UA emberctl vm stats: $out"
grep -q '^a1 ' <<<"$out" || fail "uid $UA emberctl vm stats lacks a1: $out"
grep -qE '^(b1|r1) ' <<<"$out" && fail "uid $UA emberctl vm stats shows another owner's VM: $out"
assert_eq 4 "$(call_ok vm.stats | jq '.vms | length')" "root's vm.stats count"
ctl metrics | grep -q '^# TYPE ember_vms gauge$' || fail "emberctl metrics"
pass "vm.stats and metrics.get: A sees a1 and a2, B sees b1, root all four"

note "a running guest's stats change as it works"
create_booted g1 --image mini --vsock
wait_agent g1
S=$(vsock_of g1)
stats() { call_ok vm.stats '{"name":"g1"}' | jq -c '.vms[0]'; }
deadline=$((SECONDS + 30))
until s0=$(stats) && jq -e '.agent_latency_ms != null' <<<"$s0" >/dev/null; do
	((SECONDS < deadline)) || fail "g1's agent latency stayed null: $s0"
	sleep 0.2	# poll interval
done
echo "$s0"
jq -e '.status == "running" and .pid > 0 and .rss_bytes > 1048576 and .uptime_s > 0 and
    .cpu_seconds > 0 and .disk_allocated_bytes > 0 and .vsock != null and
    .agent_latency_ms > 0' <<<"$s0" >/dev/null || fail "g1's stats: $s0"
pass "g1: pid $(jqr "$s0" .pid), RSS $(jqr "$s0" .rss_bytes), disk $(jqr "$s0" .disk_allocated_bytes), agent $(jqr "$s0" .agent_latency_ms) ms"

s1=$(stats)
# shellcheck disable=SC2016 # the guest's shell expands it
out=$(ctl vm exec g1 --timeout 60 -- sh -c 'end=$(($(date +%s) + 4)); while [ "$(date +%s)" -lt "$end" ]; do :; done; echo busy-done' 2>&1) ||
    fail "busy loop: $out"
s2=$(stats)
cpu=$(jq -n --argjson a "$s1" --argjson b "$s2" '$b.cpu_seconds - $a.cpu_seconds')
jq -e -n --argjson d "$cpu" '$d >= 0.5' >/dev/null || fail "CPU seconds grew by $cpu across a 4 s busy loop"
jq -e -n --argjson a "$s1" --argjson b "$s2" '$b.uptime_s > $a.uptime_s' >/dev/null || fail "uptime did not grow"
pass "CPU seconds grew by $cpu across a 4 s busy loop in the guest"

s1=$(stats)
vclient connect "$S" 5000 --bytes 1048576 --timeout 120 >/dev/null || fail "1 MiB echo"
s2=$(stats)
tx=$(jq -n --argjson a "$s1" --argjson b "$s2" '$b.vsock.bytes_to_guest - $a.vsock.bytes_to_guest')
rx=$(jq -n --argjson a "$s1" --argjson b "$s2" '$b.vsock.bytes_from_guest - $a.vsock.bytes_from_guest')
((tx >= 1048576 && rx >= 1048576)) || fail "vsock bytes grew by $tx to and $rx from the guest: $s1 -> $s2"
pass "vsock bytes grew by $tx to and $rx from the guest across a 1 MiB echo"

"$VSOCK_CLIENT" connect "$S" 5000 --bytes 262144 --pause-after 65536 --pause-ms 4000 \
    --timeout 60 >"$T/held.out" 2>&1 &
held=$!
_ember_pids+=("$held")
deadline=$((SECONDS + 20))
until [[ $(stats | jq .vsock.connections) -ge 1 ]]; do
	((SECONDS < deadline)) || fail "no open connection counted while one was held"
	sleep 0.1	# poll interval
done
pass "an open vsock connection is counted ($(stats | jq .vsock.connections))"
wait "$held" || fail "the held connection failed: $(cat "$T/held.out")"

scrape "$T/m3"
assert_eq 1 "$(value "$T/m3" 'ember_vms{status="running"}')" "ember_vms{status=\"running\"}"
for series in 'ember_vm_cpu_seconds_total{vm="g1"}' 'ember_vm_rss_bytes{vm="g1"}' \
    'ember_vm_vsock_bytes_total{vm="g1",direction="to_guest"}' \
    'ember_vm_vsock_bytes_total{vm="g1",direction="from_guest"}' \
    'ember_vm_uptime_seconds{vm="g1"}' 'ember_vm_agent_latency_seconds{vm="g1"}'; do
	v=$(value "$T/m3" "$series")
	awk -v v="$v" 'BEGIN { exit !(v > 0) }' || fail "$series is $v"
done
grep -q '^ember_vm_vsock_connections{vm="g1"} ' "$T/m3" || fail "no vsock connections series for g1"
(($(value "$T/m3" 'ember_vm_vsock_bytes_total{vm="g1",direction="to_guest"}') >= tx)) ||
    fail "the scrape's to_guest bytes are below vm.stats'"
pass "/metrics carries g1's CPU, RSS, uptime, vsock bytes and connections, agent latency"

out=$(ctl vm stats g1) || fail "emberctl vm stats g1: $out"
echo "$out"
grep -qE '^g1 +running ' <<<"$out" || fail "emberctl vm stats g1: $out"
out=$(ctl vm stats g1 --json) || fail "emberctl vm stats g1 --json: $out"
jq -e '.vms[0].name == "g1" and .vms[0].cpu_seconds > 0' <<<"$out" >/dev/null ||
    fail "emberctl vm stats g1 --json: $out"
# --watch redraws until interrupted: stopped by timeout after 3.5 s, it
# has printed more than one table.
timeout -s INT 3.5 "$EMBERCTL" --socket "$SOCK" vm stats --watch >"$T/watch.out" 2>&1
tables=$(grep -c '^NAME ' "$T/watch.out")
((tables >= 2)) || fail "vm stats --watch printed $tables tables in 3.5 s: $(cat "$T/watch.out")"
pass "emberctl vm stats: table, --json, --watch ($tables tables in 3.5 s)"

# A ready agent's latency older than 5 s is measured again in the
# background when vm.stats asks: a later call sees another value.
lat0=$(jqr "$s0" .agent_latency_ms)
deadline=$((SECONDS + 30))
until lat=$(stats | jq .agent_latency_ms) && [[ $lat != "$lat0" && $lat != null ]]; do
	((SECONDS < deadline)) || fail "the agent latency stayed $lat0 ms for 30 s of vm.stats calls"
	sleep 0.5	# poll interval
done
pass "the agent latency is measured again ($lat0 ms, then $lat ms)"

ctl vm stop g1 >/dev/null || fail "vm stop g1"
s3=$(stats)
jq -e '.status == "stopped" and .pid == null and .cpu_seconds == null and .rss_bytes == null and
    .vsock == null and .agent_latency_ms == null and .disk_allocated_bytes > 0' <<<"$s3" >/dev/null ||
    fail "g1's stats once stopped: $s3"
pass "stopped: no process figures, the disk still counted"

note "emberd stops cleanly with an HTTP client still connected"
exec 7<>"/dev/tcp/127.0.0.1/$PORT"
stop_emberd
exec 7>&-

note "the listener on a Unix socket"
sed -i "s|listen: \"127.0.0.1:$PORT\"|listen: \"unix:$T/metrics.sock\"|" "$CONFIG"
grep -q "unix:$T/metrics.sock" "$CONFIG" || fail "config not rewritten: $(cat "$CONFIG")"
start_emberd
assert_eq "srw-------" "$(stat -c %A "$T/metrics.sock")" "mode of metrics.sock"
curl -sS --max-time 20 --unix-socket "$T/metrics.sock" -o "$T/m5" http://localhost/metrics ||
    fail "GET /metrics on the Unix socket"
grep -q '^ember_vms{status="stopped"} 1$' "$T/m5" || fail "Unix socket scrape: $(grep ember_vms "$T/m5")"
stop_emberd
[[ ! -e $T/metrics.sock ]] || fail "metrics.sock left behind"
pass "unix:$T/metrics.sock: mode 0600, serves /metrics, removed at exit"
echo "PASS"
