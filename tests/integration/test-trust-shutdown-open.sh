#!/usr/bin/env bash
# SIGTERM while a non-root client's image.import and vm.create wait on
# their open-as helpers (EMBER_TEST_OPEN_AS_DELAY_MS, a test-only setting,
# makes a helper wait 60 s, standing in for a filesystem that hangs):
# emberd answers both with "emberd is shutting down" at once instead of
# after the 30 s grace, kills and reaps the helpers, exits 0 (an ASan build
# would exit non-zero and log a leak report), and leaves nothing behind:
# no staging directory under images/, nothing under vms/, and after a
# restart no image, no VM and no quota held.
# Needs root (setpriv, groupadd); no hypervisor.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

socket_group_setup embt
mkdir -m 0755 "$T/pub"
head -c 8192 /dev/urandom >"$T/pub/kernel"
chmod 0644 "$T/pub/kernel"
cat >"$T/emberd.yaml" <<EOF2
socket_group: $GROUP
quotas:
  default: { vms: 8, disk: 1G }
EOF2
EMBERD_EXTRA=(--config "$T/emberd.yaml")

req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":${2:-null}}"; }
as_nobody() {
	printf '%s\n' "$1" | timeout 90 setpriv --reuid=65534 --regid=65534 --groups="$GROUP" -- \
		socat -t 80 - "UNIX-CONNECT:$SOCK"
}
# helper_pids: emberd's children running as uid 65534 (open-as helpers).
helper_pids() { ps --ppid "$EMBERD_PID" -o pid=,uid= 2>/dev/null | awk '$2 == 65534 { print $1 }'; }
ms() { date +%s%3N; }

export EMBER_TEST_OPEN_AS_DELAY_MS=60000
start_emberd
before=$(as_nobody "$(req quota.get)")
assert_jq "$before" '.result.use.disk_mib == 0' "uid 65534 holds no disk quota before"
as_nobody "$(req image.import "{\"name\":\"img\",\"kernel\":\"$T/pub/kernel\"}")" >"$T/import.out" &
import_pid=$!
_ember_pids+=("$import_pid")
as_nobody "$(req vm.create "{\"name\":\"vm1\",\"kernel\":\"$T/pub/kernel\",\"start\":false}")" >"$T/create.out" &
create_pid=$!
_ember_pids+=("$create_pid")
deadline=$((SECONDS + 20))
while [[ $(helper_pids | wc -l) -ne 2 ]]; do
	((SECONDS < deadline)) || fail "emberd has $(helper_pids | wc -l) open-as helpers, not 2"
	sleep 0.02	# poll interval, not synchronisation
done
helpers=$(helper_pids | tr '\n' ' ')
r=$(as_nobody "$(req quota.get)")
assert_jq "$r" '.result.use.disk_mib >= 1' "the waiting import holds disk quota"

note "SIGTERM while the import and the create wait on their helpers"
t0=$(ms)
kill -TERM "$EMBERD_PID"
wait_exit "$EMBERD_PID" 25
t1=$(ms)
assert_eq 0 "$EXIT_STATUS" "emberd exits 0 (no sanitizer report)"
((t1 - t0 < 20000)) || fail "emberd took $((t1 - t0)) ms to stop: the import was not answered at once"
pass "emberd stopped in $((t1 - t0)) ms (grace period 30 s)"
EMBERD_PID=
wait "$import_pid" || fail "the import's client failed"
r=$(cat "$T/import.out")
assert_jq "$r" '.error.data.kind == "busy" and (.error.message | contains("emberd is shutting down"))' \
	"the import is answered with the shutdown error ($(jqr "$r" .error.message))"
if grep -qE 'LeakSanitizer|AddressSanitizer' "$LOG"; then
	fail "a sanitizer reported: $(grep -m3 -E 'Sanitizer' "$LOG")"
fi
pass "no sanitizer report in the log"
wait "$create_pid" || fail "the create's client failed"
r=$(cat "$T/create.out")
assert_jq "$r" '.error.data.kind == "busy" and (.error.message | contains("emberd is shutting down"))' \
	"the create is answered with the shutdown error ($(jqr "$r" .error.message))"
for helper in $helpers; do
	deadline=$((SECONDS + 20))
	while [[ -e /proc/$helper ]] && [[ $(stat -c %u "/proc/$helper" 2>/dev/null) == 65534 ]]; do
		((SECONDS < deadline)) || fail "the open-as helper $helper is still there"
		sleep 0.02	# poll interval, not synchronisation
	done
done
pass "the open-as helpers ($helpers) are gone"
left=$(rfind "$STATE/vms" -mindepth 1 -maxdepth 1 2>/dev/null)
[[ -z $left ]] || fail "something is left under vms/: $left"
pass "nothing under vms/"
left=$(rfind "$STATE/images" -mindepth 1 -maxdepth 1 -name '.import-*' 2>/dev/null)
[[ -z $left ]] || fail "a staging directory is left: $left"
pass "no staging directory under images/"

note "after a restart nothing of the import is left"
unset EMBER_TEST_OPEN_AS_DELAY_MS
start_emberd
r=$(as_nobody "$(req quota.get)")
assert_eq "$(jqr "$before" .result.use)" "$(jqr "$r" .result.use)" "uid 65534's quota use is as before"
assert_jq "$(call_ok image.list)" '[.images[]? | select(.name == "img")] | length == 0' "no image \"img\""
assert_jq "$(call_ok vm.list)" '.vms | length == 0' "no VM"
[[ ! -e $STATE/images/img ]] || fail "images/img exists"
left=$(rfind "$STATE/images" -mindepth 1 -maxdepth 1 -name '.import-*' 2>/dev/null)
[[ -z $left ]] || fail "a staging directory is left: $left"
pass "images/ holds nothing of it"
r=$(as_nobody "$(req image.import "{\"name\":\"img\",\"kernel\":\"$T/pub/kernel\"}")")
assert_jq "$r" '.result.name == "img"' "the same import then succeeds"
r=$(as_nobody "$(req vm.create "{\"name\":\"vm1\",\"kernel\":\"$T/pub/kernel\",\"start\":false}")")
assert_jq "$r" '.result.name == "vm1"' "and so does the same create"
stop_emberd
