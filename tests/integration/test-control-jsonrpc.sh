#!/usr/bin/env bash
# JSON-RPC 2.0 conformance of the control socket.
#
# Golden cases: tests/golden/rpc/<case>/request.json is one request line,
# sent on its own connection to a fresh emberd (empty state); response.json
# is the expected reply, compared with jq -S after normalising what cannot
# be fixed: the state directory becomes @STATE@, VM records lose their id
# and created_at, and a parse error loses the parser's wording (data). An
# empty response.json means "no reply at all". EMBER_GOLDEN_UPDATE=1
# rewrites the response files from what emberd answers (review the diff!).
#
# Then: 100 pipelined requests in one write, a line over 1 MiB, a created
# VM through a notification, and a silent client plus a client that floods
# requests without reading replies not holding up anyone else.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC=${EMBER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
GOLDEN=$SRC/tests/golden/rpc

normalize() {
	sed "s|$STATE|@STATE@|g" | jq -S '
		(.. | objects | select(has("created_at"))) |= del(.id, .created_at)
		| if type == "object" and .error.code == -32700 then del(.error.data) else . end'
}

note "golden cases"
ncases=0
for dir in "$GOLDEN"/*/; do
	case=$(basename "$dir")
	[[ -f $dir/request.json ]] || fail "$case has no request.json"
	[[ $(wc -l <"$dir/request.json") -eq 1 ]] || fail "$case: request.json must be one line"
	rm -rf "$STATE"
	start_emberd
	got=$(rpc "$(cat "$dir/request.json")") || fail "$case: no answer (socat failed)"
	stop_emberd
	if [[ ${EMBER_GOLDEN_UPDATE:-} == 1 ]]; then
		if [[ -n $got ]]; then normalize <<<"$got" >"$dir/response.json"; else : >"$dir/response.json"; fi
		echo "updated $case"
		continue
	fi
	if [[ ! -s $dir/response.json ]]; then
		assert_eq "" "$got" "$case: no reply"
	else
		[[ $(wc -l <<<"$got") -eq 1 ]] || fail "$case: expected one reply line, got: $got"
		want=$(jq -S . "$dir/response.json")
		actual=$(normalize <<<"$got") || fail "$case: reply is not JSON: $got"
		if [[ $want != "$actual" ]]; then
			diff -u <(echo "$want") <(echo "$actual") | sed 's/^/  /' >&2 || true
			fail "$case: reply differs from response.json (-want +got)"
		fi
		pass "$case"
	fi
	ncases=$((ncases + 1))
done
[[ ${EMBER_GOLDEN_UPDATE:-} == 1 ]] && exit 0
((ncases >= 20)) || fail "only $ncases golden cases found under $GOLDEN"

rm -rf "$STATE"
start_emberd

note "a notification is executed but not answered"
got=$(rpc '{"jsonrpc":"2.0","method":"vm.create","params":{"name":"quiet","start":false}}')
assert_eq "" "$got" "a vm.create notification gets no reply"
assert_jq "$(call_ok vm.inspect '{"name":"quiet"}')" '.status == "created"' "the notification created the VM"

note "pipelining"
for i in $(seq 1 100); do
	case $((i % 4)) in
	0) echo "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"vm.list\"}" ;;
	1) echo "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"vm.inspect\",\"params\":{\"name\":\"quiet\"}}" ;;
	2) echo "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"daemon.info\"}" ;;
	3) echo "{\"jsonrpc\":\"2.0\",\"id\":$i,\"method\":\"vm.create\",\"params\":{\"name\":\"p$i\",\"vsock\":true,\"start\":false}}" ;;
	esac
done >"$T/pipelined"
[[ $(stat -c %s "$T/pipelined") -lt 16384 ]] || fail "pipelined input too big for one write"
timeout 20 socat -b 65536 -t 15 - "UNIX-CONNECT:$SOCK" <"$T/pipelined" >"$T/replies" ||
	fail "socat failed on the pipelined requests"
assert_eq 100 "$(wc -l <"$T/replies")" "100 pipelined requests get 100 reply lines"
assert_eq "$(seq 1 100 | paste -sd,)" "$(jq -s -c '[.[].id] | sort | map(tostring) | join(",")' "$T/replies" | tr -d '"')" \
	"the replies carry ids 1..100"
assert_eq 0 "$(jq -s '[.[] | select(has("error"))] | length' "$T/replies")" "no pipelined request failed"
assert_eq "$(seq 3 4 99 | paste -sd,)" \
	"$(jq -s -c '[.[] | select(.result.vsock?) | .id] | sort | map(tostring) | join(",")' "$T/replies" | tr -d '"')" \
	"each pipelined create answers its own id"
assert_eq 25 "$(call_ok vsock.allocations | jq .count)" "25 pipelined creates hold 25 CIDs"

note "long lines: parsed off the loop, answered in the order sent"
# Lines of 32 KiB and more are parsed on emberd's worker thread while the
# connection's next line waits; the replies still come in request order.
pad=$(head -c 40000 /dev/zero | tr '\0' a)
{
	printf '{"jsonrpc":"2.0","id":1,"method":"vm.inspect","params":{"name":"quiet","pad":"%s"}}\n' "$pad"
	printf '{"jsonrpc":"2.0","id":2,"method":"vm.list"}\n'
	printf '{"jsonrpc":"2.0","id":3,"method":"vm.list","params":{"pad":"%s"}\n' "$pad"
	printf '[{"jsonrpc":"2.0","id":4,"method":"vm.list","params":{"pad":"%s"}},' "$pad"
	printf '{"jsonrpc":"2.0","id":5,"method":"daemon.info"}]\n'
	printf '{"jsonrpc":"2.0","id":6,"method":"daemon.info"}\n'
} >"$T/long"
timeout 20 socat -b 262144 -t 15 - "UNIX-CONNECT:$SOCK" <"$T/long" >"$T/long-replies" ||
	fail "socat failed on the long lines"
assert_eq 5 "$(wc -l <"$T/long-replies")" "four lines and a batch get five reply lines"
assert_eq '[1,2,null,[4,5],6]' \
	"$(jq -s -c 'map(if type == "array" then map(.id) else .id end)' "$T/long-replies")" \
	"the replies come in the order of the requests"
assert_jq "$(sed -n 3p "$T/long-replies")" '.error.code == -32700' \
	"a long line that is not JSON gets a parse error"
assert_jq "$(sed -n 1p "$T/long-replies")" '.result.name == "quiet" or .error.code == -32602' \
	"the long request itself is answered"

note "a line over 1 MiB"
# The request file never ends (ignoreeof), so socat only returns when
# emberd closes the connection.
{
	printf '{"jsonrpc":"2.0","id":1,"method":"vm.inspect","params":{"name":"'
	head -c $((1024 * 1024 + 100)) /dev/zero | tr '\0' 'a'
	printf '"}}\n{"jsonrpc":"2.0","id":2,"method":"vm.list"}\n'
} >"$T/big"
: >"$T/big-reply"
timeout 20 socat -t 1 "OPEN:$T/big,rdonly,ignoreeof!!OPEN:$T/big-reply,wronly" "UNIX-CONNECT:$SOCK" ||
	fail "emberd did not close the connection after an oversized line (socat status $?)"
pass "emberd closes the connection after an oversized line"
assert_eq 1 "$(wc -l <"$T/big-reply")" "exactly one reply, none for the request after the long line"
assert_jq "$(cat "$T/big-reply")" '.error.code == -32600 and .id == null and (.error.data.reason | test("1 MiB"))' \
	"the oversized line gets -32600 saying why"
assert_jq "$(call_ok daemon.info)" ".pid == $EMBERD_PID" "emberd still serves after the oversized line"

note "slow clients do not hold up others"
for i in $(seq 1 20); do create "bulk$i" true >/dev/null; done
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$EMBERD_PID"/status; }
rss0=$(rss_kb)
# A client that connects and sends nothing (reads /dev/null forever).
socat -u "OPEN:/dev/null,ignoreeof" "UNIX-CONNECT:$SOCK" &
idle_pid=$!
# A client that floods vm.list requests and never reads a reply.
flood_line='{"jsonrpc":"2.0","id":1,"method":"vm.list"}'
yes "$flood_line" | socat -u - "UNIX-CONNECT:$SOCK" &
flood_pid=$!
_ember_pids+=("$idle_pid" "$flood_pid")
# Let the flood reach emberd's output high-water mark (4 MiB of replies
# buffered for it): poll emberd's RSS until it has grown by 3 MiB.
flood_deadline=$((SECONDS + 10))
while (($(rss_kb) < rss0 + 3072)); do
	((SECONDS < flood_deadline)) || fail "the flood did not grow emberd's buffers within 10 s"
	sleep 0.05
done
pass "the flood filled emberd's output buffer ($(rss_kb) kB RSS, was $rss0 kB)"
worst=0
for i in $(seq 1 20); do
	t0=$(date +%s%N)
	r=$(printf '%s\n' '{"jsonrpc":"2.0","id":7,"method":"vm.list"}' | timeout 5 socat -t 5 - "UNIX-CONNECT:$SOCK") ||
		fail "vm.list did not complete within 5 s while a client floods without reading"
	jq -e '.result.vms | length == 46' <<<"$r" >/dev/null || fail "vm.list during the flood: $r"
	ms=$((($(date +%s%N) - t0) / 1000000))
	((ms > worst)) && worst=$ms
done
pass "20 vm.list calls complete during the flood (slowest ${worst} ms)"
alive "$flood_pid" || fail "the flooding client ended (was it disconnected?)"
rss=$(rss_kb)
((rss < 200 * 1024)) || fail "emberd RSS is ${rss} kB while a client does not read: unbounded buffering"
pass "emberd RSS stays bounded (${rss} kB) while a client does not read"
kill_mine "$idle_pid" "$flood_pid"
wait "$idle_pid" "$flood_pid" 2>/dev/null || true
assert_jq "$(call_ok daemon.info)" ".pid == $EMBERD_PID" "emberd serves after the slow clients leave"
stop_emberd
echo "PASS"
