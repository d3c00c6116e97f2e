#!/usr/bin/env bash
# emberd's Firecracker probe and its KVM check, which run on any machine:
# firecracker.kvm_device names the device the probe checks (a character
# device that opens read-write and answers KVM_GET_API_VERSION with 12), and
# anything else makes the backend unavailable with a reason that daemon.info
# reports and vm.create repeats. firecracker.require_kvm: false (for test
# doubles) skips the check and says so. The config is changed with SIGHUP,
# which re-probes. The binary is fc-double throughout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

# fc_info: the firecracker row of daemon.info.
fc_info() { call_ok daemon.info | jq -c '.backends[] | select(.name == "firecracker")'; }
fc_reason_is() { [[ $(fc_info | jq -r '.reason // empty') == "$1" ]]; }
fc_available() { [[ $(fc_info | jq -r .available) == true ]]; }

# write_config YAML_LINES...: the firecracker section with those keys.
write_config() {
	{ printf 'firecracker:\n  binary: %s\n' "$FC_DOUBLE"; printf '  %s\n' "$@"; } >"$CONFIG"
}
# reconfigure YAML_LINES...: write_config, then SIGHUP (which re-probes).
reconfigure() {
	write_config "$@"
	kill -HUP "$EMBERD_PID"
}

# expect_unavailable REASON: after a reconfigure, the backend reports REASON.
expect_unavailable() {
	wait_until 10 "firecracker unavailable with '$1' (daemon.info: $(fc_info))" fc_reason_is "$1"
	assert_jq "$(fc_info)" '.available == false and (has("version") | not) and (has("note") | not)' \
		"unavailable: $1"
}

printf 'not a device\n' >"$T/regular"
write_config "kvm_device: $T/regular"
fc_start_emberd
expect_unavailable "$T/regular is not a character device (Firecracker needs KVM)"

note "a character device that is not KVM"
reconfigure "kvm_device: /dev/null"
expect_unavailable "/dev/null is not a KVM device (KVM_GET_API_VERSION: Inappropriate ioctl for device)"
ln -s /dev/null "$T/kvm-link"
reconfigure "kvm_device: $T/kvm-link"
expect_unavailable "$T/kvm-link is not a KVM device (KVM_GET_API_VERSION: Inappropriate ioctl for device)"

note "vm.create names the reason"
r=$(call vm.create '{"name":"a","backend":"firecracker"}')
assert_jq "$r" '.error.message | contains("the firecracker backend is unavailable: '"$T"'/kvm-link is not a KVM device")' \
	"vm.create with backend firecracker is refused with the probe's reason"

note "a missing device"
reconfigure "kvm_device: $T/missing"
expect_unavailable "$T/missing: No such file or directory (Firecracker needs KVM)"

note "require_kvm: false skips the check and says so"
mark=$(log_mark)
reconfigure "kvm_device: $T/missing" "require_kvm: false"
wait_until 10 "firecracker available without KVM (daemon.info: $(fc_info))" fc_available
assert_jq "$(fc_info)" '(.note | startswith("KVM not checked")) and (has("reason") | not) and (.version | length > 0)' \
	"available with the note \"KVM not checked\""
wait_until 10 "emberd warns that KVM is not checked" \
	eval 'log_since "$mark" | grep -q "backend firecracker: .*KVM not checked"'
pass "emberd logs a warning that KVM is not checked"
make_image mini
call_ok vm.create '{"name":"b","image":"mini","backend":"firecracker","start":false}' >/dev/null
pass "vm.create accepts the firecracker backend"

note "the default checks /dev/kvm"
reconfigure
if [[ ! -e /dev/kvm ]]; then
	expect_unavailable "/dev/kvm: No such file or directory (Firecracker needs KVM)"
else
	# A real device: whether it answers depends on the machine, but the
	# verdict must come from /dev/kvm and carry no "not checked" note.
	wait_until 10 "re-probed against /dev/kvm (daemon.info: $(fc_info))" \
		eval '! fc_info | jq -e .note >/dev/null'
	assert_jq "$(fc_info)" '.available or (.reason | startswith("/dev/kvm"))' \
		"/dev/kvm decides: $(fc_info)"
fi

note "--check-config"
printf 'firecracker:\n  kvm_device: dev/kvm\n' >"$T/bad.yaml"
if out=$("$EMBERD" --check-config "$T/bad.yaml" 2>&1); then
	fail "--check-config accepted a relative kvm_device: $out"
fi
[[ $out == *'"firecracker.kvm_device": expected an absolute path, got "dev/kvm"'* ]] ||
	fail "--check-config: unexpected message: $out"
pass "--check-config refuses a relative kvm_device"

stop_emberd
