#!/usr/bin/env bash
# Firecracker backend against fc-double: the exact API requests of a create
# with vsock and a root disk, the hybrid vsock socket, pause/resume as
# PATCH /vm, graceful stop through SendCtrlAltDel, forced stop, and vm.fork
# of a stopped VM (own CID, own socket, copy of the parent's root disk).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/fc-lib.sh"

fc_start_emberd
make_image mini
IMG=$STATE/images/mini

note "create --vsock: request sequence and bodies"
ctl vm create f1 --image mini --vsock --cpus 2 --memory 256M >/dev/null || fail "vm create f1"
rec=$(inspect f1)
assert_jq "$rec" '.status == "running" and .backend == "firecracker" and .pid > 0' "f1 is running on firecracker"
cid=$(jqr "$rec" .vsock.guest_cid)
D=$(vmdir f1)
assert_eq "$D/rootfs.img" "$(jqr "$rec" .disk_path)" "f1's disk is its own rootfs.img"
cmp -s "$IMG/rootfs.img" "$D/rootfs.img" || fail "f1's rootfs.img is not a copy of the image's"
pass "rootfs.img is a copy of the image's root filesystem"
expected=$(jq -n -c --arg img "$IMG" --arg d "$D" --argjson cid "$cid" '[
	{method: "PUT", path: "/machine-config", body: {vcpu_count: 2, mem_size_mib: 256}, status: 204},
	{method: "PUT", path: "/boot-source", body: {kernel_image_path: "\($d)/kernel",
		boot_args: "console=ttyS0 reboot=k panic=1",	# Firecracker adds pci=off and root=
		initrd_path: "\($d)/initrd"}, status: 204},
	{method: "PUT", path: "/drives/rootfs", body: {drive_id: "rootfs", path_on_host: "\($d)/rootfs.img",
		is_root_device: true, is_read_only: false}, status: 204},
	{method: "PUT", path: "/vsock", body: {guest_cid: $cid, uds_path: "\($d)/vsock.sock"}, status: 204},
	{method: "PUT", path: "/actions", body: {action_type: "InstanceStart"}, status: 204}]')
# The VM boots from its own links to the image's vmlinux and initrd.
[[ $D/kernel -ef $IMG/vmlinux && $D/initrd -ef $IMG/initrd ]] ||
	fail "f1's kernel and initrd are not links to the image's vmlinux and initrd"
got=$(jq -s -c . "$(reqlog f1)")
[[ $(jq -c --argjson e "$expected" '. == $e' <<<"$got") == true ]] ||
	fail "request log differs:
  got:      $got
  expected: $expected"
pass "request sequence and bodies are exact, all 204"

note "an explicit boot_args with root= is passed unchanged; no rootfs, no drive"
call_ok vm.create "{\"name\":\"plain\",\"kernel\":\"$IMG/vmlinux\",\"boot_args\":\"console=ttyS0 root=/dev/vdb ro\"}" >/dev/null
got=$(jq -s -c '[.[] | [.method, .path, .body]]' "$(reqlog plain)")
[[ $got == "$(jq -n -c --arg k "$IMG/vmlinux" '[["PUT","/machine-config",{vcpu_count:1,mem_size_mib:512}],
	["PUT","/boot-source",{kernel_image_path:$k,boot_args:"console=ttyS0 root=/dev/vdb ro"}],
	["PUT","/actions",{action_type:"InstanceStart"}]]')" ]] || fail "plain: requests $got"
pass "kernel-only VM: machine-config, boot-source (boot_args as given), InstanceStart"
ctl vm delete plain --force >/dev/null

note "hybrid vsock"
assert_vsock_answers f1
got=$(printf 'CONNECT 7\nhello\n' | timeout 10 socat -t 5 - "UNIX-CONNECT:$D/vsock.sock" 2>/dev/null || true)
assert_eq "" "$got" "CONNECT to a port nobody listens on is closed without OK"
pass "vsock.sock answers CONNECT 1024 with OK and echoes"

note "pause and resume"
assert_jq "$(ctl --json vm pause f1)" '.status == "paused"' "pause answers paused"
assert_eq paused "$(status_of f1)" "inspect says paused"
assert_jq "$(jq -c -s '.[-1]' "$(reqlog f1)")" '. == {method:"PATCH",path:"/vm",body:{state:"Paused"},status:204}' \
	"PATCH /vm {state: Paused} sent"
assert_jq "$(ctl --json vm resume f1)" '.status == "running"' "resume answers running"
assert_jq "$(jq -c -s '.[-1]' "$(reqlog f1)")" '. == {method:"PATCH",path:"/vm",body:{state:"Resumed"},status:204}' \
	"PATCH /vm {state: Resumed} sent"
assert_eq running "$(status_of f1)" "inspect says running"

note "graceful stop"
pid=$(pid_of f1)
gone "$pid" && fail "f1's pid $pid is not alive"
mark=$(log_mark)
t0=$SECONDS
assert_jq "$(ctl --json vm stop f1)" '.status == "stopped" and .pid == 0' "stop answers stopped, pid 0"
((SECONDS - t0 < 5)) || fail "graceful stop took $((SECONDS - t0)) s (the double exits 100 ms after CtrlAltDel)"
assert_jq "$(jq -c -s '.[-1]' "$(reqlog f1)")" '. == {method:"PUT",path:"/actions",body:{action_type:"SendCtrlAltDel"},status:204}' \
	"SendCtrlAltDel sent"
gone "$pid" || fail "firecracker pid $pid still alive after stop"
assert_no_process_for f1
assert_sockets_gone f1
log_since "$mark" | grep 'SIGTERM\|killing it' >/dev/null && fail "graceful stop escalated: $(log_since "$mark")"
assert_eq stopped "$(status_of f1)" "status stopped"
assert_jq "$(call_ok vsock.allocations)" ".allocations[\"$cid\"] == \"f1\"" "the stopped VM keeps its CID"
pass "CtrlAltDel honoured: process gone, sockets removed, stopped"

note "restart of the stopped VM reuses its CID and socket path"
assert_jq "$(ctl --json vm start f1)" ".status == \"running\" and .vsock.guest_cid == $cid" "f1 starts again with CID $cid"
assert_vsock_answers f1

note "forced stop"
pid=$(pid_of f1)
n=$(wc -l <"$(reqlog f1)")
t0=$SECONDS
assert_jq "$(ctl --json vm stop f1 --force)" '.status == "stopped"' "stop --force answers stopped"
((SECONDS - t0 < 3)) || fail "forced stop took $((SECONDS - t0)) s"
gone "$pid" || fail "pid $pid alive after stop --force"
assert_eq "$n" "$(wc -l <"$(reqlog f1)")" "no API call on a forced stop (SIGKILL straight away)"
assert_sockets_gone f1
assert_no_process_for f1

note "fork of a stopped VM"
# Make the parent's disk differ from the image's so the copy's source shows.
printf 'written by the parent guest' | dd of="$D/rootfs.img" bs=1 seek=4096 conv=notrunc status=none
child=$(ctl --json vm fork f1 f1c) || fail "vm fork f1 f1c"
assert_jq "$child" '.status == "running" and .parent_vm == "f1" and .backend == "firecracker"' "fork runs, parent_vm f1"
ccid=$(jqr "$child" .vsock.guest_cid)
[[ $ccid != "$cid" && $ccid -ge 3 ]] || fail "child CID $ccid vs parent's $cid"
pass "child has its own CID $ccid"
CD=$(vmdir f1c)
assert_jq "$child" ".vsock.uds_path == \"$CD/vsock.sock\" and .disk_path == \"$CD/rootfs.img\"" "child's own socket and disk paths"
cmp "$D/rootfs.img" "$CD/rootfs.img" || fail "child's rootfs.img differs from the parent's"
cmp -s "$IMG/rootfs.img" "$CD/rootfs.img" && fail "child's disk is the image's, not the parent's"
[[ $(stat -c %i "$D/rootfs.img") != "$(stat -c %i "$CD/rootfs.img")" ]] || fail "child shares the parent's disk inode"
pass "child's rootfs.img is a private copy of the parent's"
assert_jq "$(jq -c -s '[.[] | select(.path == "/drives/rootfs" or .path == "/vsock") | .body]' "$(reqlog f1c)")" \
	"[{drive_id:\"rootfs\",path_on_host:\"$CD/rootfs.img\",is_root_device:true,is_read_only:false},{guest_cid:$ccid,uds_path:\"$CD/vsock.sock\"}]" \
	"child's Firecracker got its own drive and vsock"
assert_vsock_answers f1c
assert_jq "$(call_ok vsock.allocations)" ".allocations == {\"$cid\":\"f1\",\"$ccid\":\"f1c\"}" "allocations: parent and child"

note "delete"
ctl vm delete f1c --force >/dev/null
ctl vm delete f1 >/dev/null
assert_jq "$(call_ok vsock.allocations)" '.count == 0 and .allocations == {}' "no CIDs left"
[[ ! -e $D && ! -e $CD ]] || fail "VM directories left behind"
[[ -z $(procs_under "$STATE/vms/") ]] || fail "processes left: $(procs_under "$STATE/vms/")"
pass "deleted: directories, CIDs and processes gone"

stop_emberd
echo "PASS: fc-lifecycle"
