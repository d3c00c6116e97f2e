#!/usr/bin/env bash
# What Firecracker would refuse, emberd refuses up front: 33 vCPUs (the
# OpenAPI maximum is 32) and a kernel command line past 2047 bytes once
# Firecracker's own additions are counted (pci=off, root=/dev/vda rw, one
# virtio_mmio.device= per device). Refused creates leave nothing behind and
# never spawn the double; a start of a VM whose record is over the limit
# fails before anything is spawned. Also: emberd no longer sends root= (the
# double, like Firecracker, appends it for the root drive: it appears once),
# and a guest that resets every connection to port 1024 makes `--wait` say
# so instead of "may still be booting".
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

# The echo "guest" listens on port 52 only: CONNECT 1024 is closed at once,
# as Firecracker does when the guest answers RST.
fc_start_emberd FC_DOUBLE_VSOCK_PORTS=52
make_image mini

# args N: a boot_args string of exactly N bytes.
args() { head -c "$1" /dev/zero | tr '\0' x; }
cids_in_use() { call_ok daemon.info | jq -r .cids_in_use; }
# assert_nothing_left NAME: no record, no directory, no CID, and no
# Firecracker was ever spawned for it (emberd logs every spawn).
assert_nothing_left() {
	[[ $(call vm.inspect "{\"name\":\"$1\"}" | jq -r '.error.data.kind // .error.message') != null ]] ||
		fail "$1: a record was left"
	[[ ! -e $(vmdir "$1") ]] || fail "$1: its directory was left: $(ls -la "$(vmdir "$1")")"
	if grep -q "firecracker: $1 spawned" "$LOG"; then fail "$1: a Firecracker was spawned"; fi
	assert_eq 0 "$(cids_in_use)" "$1: nothing spawned, no CID allocated"
}

note "vcpu_count above 32"
r=$(call vm.create '{"name":"wide","image":"mini","backend":"firecracker","cpus":33,"vsock":true}')
assert_jq "$r" '.error.data.kind == "invalid_spec"' "cpus 33: invalid_spec"
assert_jq "$r" '.error.message | test("cpus 33 is outside Firecracker.s range \\(vcpu_count 1 to 32\\)")' \
	"cpus 33: the message names Firecracker's range"
assert_nothing_left wide
r=$(call vm.create '{"name":"wide","image":"mini","backend":"firecracker","cpus":33,"start":false}')
assert_jq "$r" '.error.data.kind == "invalid_spec"' "cpus 33 without start: refused too"
assert_nothing_left wide

ctl vm create wide --image mini --backend firecracker --cpus 32 --vsock >/dev/null ||
	fail "vm create wide --cpus 32"
assert_jq "$(jq -c 'select(.path == "/machine-config") | .body' "$(reqlog wide)")" \
	'.vcpu_count == 32' "cpus 32: sent as vcpu_count 32"
assert_jq "$(inspect wide)" '.status == "running"' "cpus 32: running"
grep -q "firecracker: wide spawned" "$LOG" || fail "emberd does not log spawns: the checks above prove nothing"
pass "spawns are logged (so their absence above means something)"
ctl vm delete --force wide >/dev/null

note "root=/dev/vda is Firecracker's to add"
ctl vm create r1 --image mini --backend firecracker --vsock >/dev/null || fail "vm create r1"
sent=$(jq -r 'select(.path == "/boot-source") | .body.boot_args' "$(reqlog r1)")
[[ $sent != *root=* && $sent != *pci=off* ]] || fail "emberd still sends root= or pci=off: $sent"
pass "boot_args sent without root= and pci=off: $sent"
line=$(sed -n 's/^fc-double: kernel command line: //p' "$(vmdir r1)/console.log")
[[ -n $line ]] || fail "the double did not report the command line: $(cat "$(vmdir r1)/console.log")"
assert_eq 1 "$(grep -o 'root=/dev/vda rw' <<<"$line" | wc -l)" "the guest's command line has root=/dev/vda rw once"
assert_eq 1 "$(grep -o 'pci=off' <<<"$line" | wc -l)" "the guest's command line has pci=off once"
ctl vm delete --force r1 >/dev/null

note "kernel command line length"
# With a root disk and vsock Firecracker adds 8 + 17 + 2 * 36 = 97 bytes.
budget=$((2047 - 97))
r=$(call vm.create "{\"name\":\"long\",\"image\":\"mini\",\"backend\":\"firecracker\",\"vsock\":true,\"boot_args\":\"$(args $((budget + 1)))\"}")
assert_jq "$r" '.error.data.kind == "invalid_spec"' "boot_args one byte over: invalid_spec"
assert_jq "$r" ".error.message | contains(\"$((budget + 1)) bytes, and Firecracker adds up to 97\") and contains(\"at most $budget bytes\")" \
	"boot_args one byte over: the sizes are in the message"
assert_nothing_left long
ctl vm create long --image mini --backend firecracker --vsock >/dev/null ||
	fail "vm create long"
ctl vm delete --force long >/dev/null
r=$(call vm.create "{\"name\":\"long\",\"image\":\"mini\",\"backend\":\"firecracker\",\"vsock\":true,\"boot_args\":\"$(args "$budget")\"}")
assert_jq "$r" '.result.status == "running"' "boot_args at the budget: accepted and booted"
line=$(sed -n 's/^fc-double: kernel command line: //p' "$(vmdir long)/console.log")
((${#line} <= 2047)) || fail "the double built ${#line} bytes"
pass "the double's command line is ${#line} bytes"
ctl vm delete --force long >/dev/null

printf '{"jsonrpc":"2.0","id":1,"method":"vm.create","params":{"name":"huge","image":"mini","backend":"firecracker","boot_args":"%s"}}\n' \
	"$(args $((900 * 1024)))" >"$T/huge.json"
r=$(timeout 20 socat -t 15 - "UNIX-CONNECT:$SOCK" <"$T/huge.json")
assert_jq "$r" '.error.data.kind == "invalid_spec" and (.error.message | contains("921600 bytes"))' \
	"900 KB of boot_args: refused"
assert_nothing_left huge
r=$(call vm.create '{"name":"ctl","image":"mini","backend":"firecracker","boot_args":"console=ttyS0\ninit=/bin/sh"}')
assert_jq "$r" '.error.data.kind == "invalid_spec" and (.error.message | contains("0x0a at position 14"))' \
	"a newline in boot_args: refused"
assert_nothing_left ctl

note "a start is checked before anything is spawned"
ctl vm create later --image mini --backend firecracker --vsock --no-start >/dev/null ||
	fail "vm create later --no-start"
# An older emberd accepted any length: put an over-long line into the record.
vmjson=$(vmdir later)/vm.json
stop_emberd
jq --arg a "$(args 3000)" '.boot_args = $a' "$vmjson" >"$T/vm.json" && cat "$T/vm.json" >"$vmjson"
fc_start_emberd FC_DOUBLE_VSOCK_PORTS=52
if out=$(ctl vm start later 2>&1); then fail "vm start with 3000 bytes of boot_args succeeded"; fi
[[ $out == *"boot_args is too long"* ]] || fail "vm start later: $out"
pass "start refused: ${out:0:120}"
[[ ! -e $(reqlog later) ]] || fail "the double was spawned: $(cat "$(reqlog later)")"
if grep -q "firecracker: later spawned" "$LOG"; then fail "later: a Firecracker was spawned"; fi
pass "no Firecracker was spawned"
ctl vm delete --force later >/dev/null

note "--wait when the guest resets every connection to the agent port"
mark=$(log_mark)
t0=$SECONDS
if out=$(ctl vm create quiet --image mini --backend firecracker --vsock --wait 3 2>&1); then
	fail "create --wait succeeded without an agent"
fi
[[ $out =~ the\ guest\ reset\ ([0-9]+)\ connections?\ to\ port\ 1024:\ no\ agent\ is\ listening ]] ||
	fail "--wait error: $out"
n=${BASH_REMATCH[1]}
((n >= 2)) || fail "only $n resets counted in 3 s of probing"
[[ $out != *"may still be booting"* ]] || fail "--wait still guesses: $out"
pass "--wait: the guest reset $n connections (after $((SECONDS - t0)) s)"
# The VM created before the wait was rolled back or stays: either way its
# resets were logged, and only a few lines for many resets.
lines=$(log_since "$mark" | grep -c 'the guest reset .* to port 1024' || true)
((lines >= 1)) || fail "the resets were not logged: $(log_since "$mark" | tail -5)"
((lines < n)) || fail "$lines log lines for $n resets: not rate-limited"
pass "$lines log line(s) for $n resets"
if [[ $(call vm.inspect '{"name":"quiet"}' | jq -r '.result.status // empty') == running ]]; then
	assert_jq "$(inspect quiet)" '.agent.resets >= 2' "inspect shows the resets"
	ctl vm delete --force quiet >/dev/null
fi

stop_emberd
pass "done"
