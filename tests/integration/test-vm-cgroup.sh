#!/usr/bin/env bash
# Hypervisors in a cpu cgroup of their own (platform/vm-cgroup.h), with a
# real QEMU under TCG.
#  - emberd sharing its cgroup with the test suite divides nothing, and
#    daemon.info says why;
#  - emberd alone in a cgroup (as in a unit's delegated one) makes <own>/vms
#    (cpu.shares 128), QEMU runs there and emberd stays in <own>; after
#    kill -9 the next emberd adopts the VM, which is still in vms/;
#  - a QEMU an older emberd left in emberd's cgroup is moved into vms/, but
#    a process that is no VM of emberd's keeps emberd from dividing.
# The test makes its cgroup under its own in the cgroup v1 cpu hierarchy,
# starts emberd in it through a wrapper, and removes it when it ends.
# Without such a hierarchy (cgroup v2 hosts, not yet grouped) the second
# part reports a skip.
set -euo pipefail
. "$(dirname "$0")/qemu-lib.sh"

ensure_image

note "emberd in the test suite's cgroup divides nothing"
start_emberd
info=$(call_ok daemon.info)
assert_jq "$info" '.vm_cgroup.path == null and (.vm_cgroup.reason | length > 0)' \
    "daemon.info: no group, and a reason ($(jq -r .vm_cgroup.reason <<<"$info"))"
stop_emberd

# The cgroup v1 hierarchy with cpu: mount point, mounted root, our place.
read -r mnt mroot < <(awk '{ for (i = 1; $i != "-"; i++) ; fs = $(i + 1); opts = "," $(i + 3) ","
	if (fs == "cgroup" && opts ~ /,cpu,/) { print $5, $4; exit } }' /proc/self/mountinfo) || true
own=$(awk -F: '("," $2 ",") ~ /,cpu,/ { print $3; exit }' /proc/self/cgroup)
if [[ -z ${mnt:-} || -z $own || ! -w $mnt ]]; then
	echo "SKIP: no writable cgroup v1 hierarchy with the cpu controller (cgroup v2 is not grouped yet)"
	exit 77
fi
[[ $mroot == / ]] || own=${own#"$mroot"}
CG=${mnt}${own%/}/ember-it.$$
mkdir "$CG" || fail "cannot make $CG"
_cgroup_cleanup() {
	_qemu_cleanup
	local d deadline=$((SECONDS + 10))
	for d in "$CG/vms" "$CG"; do
		# a killed QEMU leaves its cgroup once it is reaped
		while [[ -d $d ]] && ! rmdir "$d" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.05	# poll interval, not synchronisation
		done
	done
}
trap _cgroup_cleanup EXIT

# emberd through a wrapper that moves itself into $CG and execs emberd.
REAL_EMBERD=$EMBERD
EMBERD=$T/emberd-in-cgroup
printf '#!/bin/sh\necho $$ >"%s/cgroup.procs" || exit 1\nexec "%s" "$@"\n' "$CG" "$REAL_EMBERD" >"$EMBERD"
chmod +x "$EMBERD"

cpu_cgroup_of() { awk -F: '("," $2 ",") ~ /,cpu,/ { print $3; exit }' "/proc/$1/cgroup"; }

note "emberd alone in its cgroup puts QEMU in <own>/vms"
start_emberd
info=$(call_ok daemon.info)
assert_jq "$info" ".vm_cgroup.path == \"$CG/vms\"" "daemon.info: the group is $CG/vms"
assert_eq 128 "$(cat "$CG/vms/cpu.shares")" "the group weighs an eighth of emberd (cpu.shares 128)"
import_image mini
create_booted g1 --image mini
pid=$(field g1 .pid)
want=${own%/}/ember-it.$$
assert_eq "$want/vms" "$(cpu_cgroup_of "$pid")" "QEMU (pid $pid) runs in the vms group"
assert_eq "$want" "$(cpu_cgroup_of "$EMBERD_PID")" "emberd stays in its own cgroup"
grep -qx "$pid" "$CG/vms/cgroup.procs" || fail "$CG/vms/cgroup.procs does not list QEMU"
pass "the group's cgroup.procs lists QEMU"

note "after kill -9, the next emberd adopts the VM, still in the group"
restart_emberd
assert_jq "$(call_ok daemon.info)" ".vm_cgroup.path == \"$CG/vms\"" "the group is found again"
assert_eq "running" "$(field g1 .status)" "g1 is adopted, running"
assert_eq "$pid" "$(field g1 .pid)" "same QEMU"
assert_eq "$want/vms" "$(cpu_cgroup_of "$pid")" "QEMU is still in the vms group"

note "a QEMU an older emberd left in emberd's cgroup is moved into the group"
crash_emberd
echo "$pid" >"$CG/cgroup.procs"	# where an emberd without grouping left it
sleep 600 &	# and something that is no VM of emberd's
stranger=$!
_ember_pids+=("$stranger")
echo "$stranger" >"$CG/cgroup.procs"
start_emberd
info=$(call_ok daemon.info)
assert_jq "$info" '.vm_cgroup.path == null and (.vm_cgroup.reason | test("shares"))' \
    "with a process that is no VM of its own there, emberd divides nothing"
assert_eq "$want" "$(cpu_cgroup_of "$pid")" "and leaves QEMU where it was"
crash_emberd
kill "$stranger"
wait "$stranger" 2>/dev/null || true
start_emberd
assert_jq "$(call_ok daemon.info)" ".vm_cgroup.path == \"$CG/vms\"" \
    "with only its own VM's QEMU there, emberd makes the group"
assert_eq "$want/vms" "$(cpu_cgroup_of "$pid")" "and moves QEMU into it"
assert_eq "running" "$(field g1 .status)" "g1 runs on"

ctl vm stop g1 >/dev/null || fail "vm stop g1"
wait_gone "$pid"
ctl vm delete g1 >/dev/null || fail "vm delete g1"
stop_emberd
pass "stopped and deleted; the test's cgroup goes with it"
