#!/usr/bin/env bash
# A SIGHUP re-probe runs off the event loop: the probe of every backend runs
# in a child process and completes on the loop, so emberd keeps answering
# while a hypervisor's `--version` hangs, and keeps the last probe's result
# until the new one arrives. The hanging binary here is a wrapper around
# fc-double whose --version blocks on a FIFO the test opens only after
# emberd has answered; had the loop waited for the probe, daemon.info would
# only have come back once the probe's own 5 s deadline killed the wrapper,
# and the backend would then read "--version failed", not the new binary.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

fc_info() { call_ok daemon.info | jq -c '.backends[] | select(.name == "firecracker")'; }
fc_binary_is() { [[ $(fc_info | jq -r '.binary // empty') == "$1" && $(fc_info | jq -r .available) == true ]]; }

WRAPPER=$T/fc-slow
GATE=$T/gate
mkfifo "$GATE"
cat >"$WRAPPER" <<EOF
#!/usr/bin/env bash
if [[ \${1:-} == --version ]]; then
	: >"$T/probing"
	read -r _ <"$GATE"
fi
exec "$FC_DOUBLE" "\$@"
EOF
chmod +x "$WRAPPER"

fc_start_emberd
fc_binary_is "$FC_DOUBLE" || fail "firecracker not available at start: $(fc_info)"
pass "firecracker available with fc-double"

note "a re-probe whose --version hangs"
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$WRAPPER" >"$CONFIG"
kill -HUP "$EMBERD_PID"
wait_until 20 "the re-probe runs the wrapper's --version" test -e "$T/probing"
info=$(fc_info)
assert_jq "$info" '.available == true and .binary == "'"$FC_DOUBLE"'"' \
	"daemon.info answers during the probe, with the last probe's result"
r=$(call vm.list)
assert_jq "$r" '.result.vms | type == "array"' "vm.list is served during the probe"

# Opening the FIFO for writing waits for its reader: the probe still there.
timeout 10 bash -c 'echo go >"$1"' _ "$GATE" ||
	fail "the probe was no longer waiting (it was killed at its deadline: the loop blocked)"
wait_until 20 "the new binary is reported (daemon.info: $(fc_info))" fc_binary_is "$WRAPPER"
pass "the re-probe completed on the loop with the new binary"

note "a re-probe whose binary is gone keeps serving and reports why"
printf 'firecracker:\n  binary: %s\n  require_kvm: false\n' "$T/missing" >"$CONFIG"
kill -HUP "$EMBERD_PID"
fc_unavailable() { [[ $(fc_info | jq -r .available) == false ]]; }
wait_until 20 "firecracker unavailable (daemon.info: $(fc_info))" fc_unavailable
assert_jq "$(fc_info)" '.reason == "'"$T"'/missing not found"' "the reason names the binary"

stop_emberd
pass "backend re-probe"
