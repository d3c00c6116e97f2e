#!/usr/bin/env bash
# Per-user quotas, driven as uid 65534 (a member of the socket group) by
# root: VMs, vsock CIDs (one user cannot take the whole CID range), vCPUs
# and memory of running VMs, disk (images and VM disks), each refused with
# quota_exceeded naming the limit, the use and the maximum, before anything
# is allocated (no directory, no CID, no staging image). Root has no quota;
# a quotas.users entry overrides the default; daemon.info and quota.get
# show use against limits. Work in flight counts: a create still opening
# its files and an import still running hold what they were checked for,
# so two at once cannot pass a quota together, and nothing stays held
# after. Needs root (setpriv, groupadd).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

socket_group_setup emberq

NOBODY=$(id -un 65534)
cat >"$T/emberd.yaml" <<EOF2
socket_group: $GROUP
cid_min: 3
cid_max: 10
quotas:
  default: { vms: 3, cids: 2, vcpus: 2, memory: 1G, disk: 1G, connections: 8 }
  users:
    $NOBODY: { vms: 4 }
EOF2
EMBERD_EXTRA=(--config "$T/emberd.yaml")
start_emberd

# as_nobody LINE: one request as uid 65534 in the socket group.
as_nobody() {
	printf '%s\n' "$1" | timeout 20 setpriv --reuid=65534 --regid=65534 --groups="$GROUP" -- \
		socat -t 15 - "UNIX-CONNECT:$SOCK"
}
req() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":${2:-null}}"; }
vmdirs() { rfind "$STATE/vms" -mindepth 1 -maxdepth 1 -type d | wc -l; }
assert_quota() {	# REPLY LIMIT WHAT
	assert_jq "$1" ".error.code == -32014 and .error.data.kind == \"quota_exceeded\"" "$3 is quota_exceeded"
	assert_jq "$1" ".error.message | test(\"quota \\\"$2\\\"\") and test(\"in use\") and test(\"allowed\")" \
		"the message names the limit \"$2\", the use and the maximum"
}

note "quota.get and daemon.info"
r=$(as_nobody "$(req daemon.info)")
assert_jq "$r" '.result.quota.uid == 65534 and .result.quota.limited and .result.quota.max.vms == 4' \
	"daemon.info shows uid 65534 its quota (the users entry overrides vms)"
assert_jq "$r" '.result.quota.max.cids == 2 and .result.quota.max.memory_mib == 1024 and .result.quota.use.vms == 0' \
	"keys the users entry leaves out come from the default"
assert_jq "$(call_ok daemon.info)" '.quota.limited == false and (.quota | has("max") | not)' "root has no quota"
r=$(as_nobody "$(req quota.get '{"uid":0}')")
assert_jq "$r" '.error.data.kind == "permission_denied"' "uid 65534 cannot read root's quota"
assert_jq "$(call_ok quota.get '{"uid":1234}')" '.uid == 1234 and .max.vms == 3' "root reads anyone's (default for 1234)"

note "cids"
for v in a b; do
	r=$(as_nobody "$(req vm.create "{\"name\":\"$v\",\"vsock\":true,\"start\":false}")")
	assert_jq "$r" '.result.vsock.guest_cid > 0' "uid 65534 creates vsock VM $v"
done
before=$(vmdirs)
r=$(as_nobody "$(req vm.create '{"name":"c","vsock":true,"start":false}')")
assert_quota "$r" cids "a third vsock VM"
assert_jq "$r" '.error.message | test("2 in use") and test("> 2 allowed")' "it says 2 in use, 2 allowed"
assert_eq "$before" "$(vmdirs)" "no directory was created"
assert_jq "$(call_ok vsock.allocations)" '.count == 2' "no CID was allocated"
r=$(as_nobody "$(req vm.fork '{"source":"a","name":"a2","start":false}')")
assert_quota "$r" cids "a fork that inherits vsock"
for i in 1 2 3 4 5 6; do
	assert_jq "$(create root$i true)" '.result.vsock.guest_cid > 0' "root still gets a CID ($i of the 6 left)"
done
assert_jq "$(create root7 true)" '.error.data.kind == "cids_exhausted"' "only then is the range exhausted"

note "vms"
r=$(as_nobody "$(req vm.create '{"name":"c","start":false}')")
assert_jq "$r" '.result.name == "c"' "a VM without vsock is still within the VM quota"
r=$(as_nobody "$(req vm.create '{"name":"d","start":false}')")
assert_jq "$r" '.result.name == "d"' "the fourth VM (users entry: vms 4)"
r=$(as_nobody "$(req vm.create '{"name":"e","start":false}')")
assert_quota "$r" vms "a fifth VM"
[[ ! -e $STATE/vms/e ]] || fail "a directory was created for the refused VM"
pass "no directory for the refused VM"
r=$(as_nobody "$(req vm.fork '{"source":"c","name":"c2","start":false}')")
assert_quota "$r" vms "a fork past the VM quota"
as_nobody "$(req vm.delete '{"name":"d"}')" >/dev/null

note "vcpus and memory of running VMs"
r=$(as_nobody "$(req vm.create '{"name":"big","cpus":4,"start":true}')")
assert_quota "$r" vcpus "creating and starting a 4-vCPU VM"
[[ ! -e $STATE/vms/big ]] || fail "a directory was created for the refused VM"
r=$(as_nobody "$(req vm.create '{"name":"fat","memory_mib":2048,"start":true}')")
assert_quota "$r" memory "creating and starting a 2 GiB VM"
r=$(as_nobody "$(req vm.create '{"name":"big","cpus":4,"start":false}')")
assert_jq "$r" '.result.cpus == 4' "a VM that does not start does not count against vCPUs"
r=$(as_nobody "$(req vm.start '{"name":"big"}')")
assert_quota "$r" vcpus "starting it"
assert_jq "$(call_ok vm.inspect '{"name":"big"}')" '.status == "created"' "the refused start left it created"
as_nobody "$(req vm.delete '{"name":"big"}')" >/dev/null
assert_jq "$(create rootbig false)" '.result.name == "rootbig"' "root creates past every quota"

note "disk"
mkdir -m 0755 "$T/tree"
echo hello >"$T/tree/file"
head -c 4096 /dev/zero >"$T/kernel"
chmod 0644 "$T/kernel" "$T/tree/file"
r=$(as_nobody "$(req image.import "{\"name\":\"huge\",\"kernel\":\"$T/kernel\",\"rootfs_dir\":\"$T/tree\",\"rootfs_size_mib\":16777216}")")
assert_quota "$r" disk "image import --rootfs-size 16T"
assert_jq "$r" '.error.message | test("16777217 MiB asked|16777216 MiB asked")' "the message gives the size asked for"
[[ -z $(ls -A "$STATE/images" 2>/dev/null) ]] || fail "the refused import left $(ls -A "$STATE/images")"
pass "nothing was staged in the image store"
r=$(as_nobody "$(req vm.create '{"name":"disky","disk_size_mib":4096,"start":false}')")
assert_quota "$r" disk "a VM asking for a 4 GiB root disk"
r=$(as_nobody "$(req quota.get)")
assert_jq "$r" '.result.use.vms == 3 and .result.use.cids == 2 and .result.use.vcpus == 0 and .result.use.disk_mib == 0' \
	"quota.get shows what uid 65534 holds after all the refusals"
stop_emberd

note "work in flight counts"
# EMBER_TEST_OPEN_AS_DELAY_MS (test-only) keeps each request waiting on
# its open-as helper, so the first is still in flight when the second comes.
export EMBER_TEST_OPEN_AS_DELAY_MS=2000
start_emberd
helpers() { ps --ppid "$EMBERD_PID" -o uid= 2>/dev/null | grep -c '^ *65534$' || true; }
wait_helpers() {	# N: until emberd has N open-as helpers (deadline 20 s)
	local deadline=$((SECONDS + 20))
	while [[ $(helpers) -ne $1 ]]; do
		((SECONDS < deadline)) || fail "emberd has $(helpers) open-as helpers, not $1"
		sleep 0.02	# poll interval, not synchronisation
	done
}
as_nobody "$(req vm.create "{\"name\":\"p1\",\"kernel\":\"$T/kernel\",\"start\":false}")" >"$T/p1.out" &
p1=$!
_ember_pids+=("$p1")
wait_helpers 1
r=$(as_nobody "$(req vm.create '{"name":"p2","start":false}')")
[[ ! -s $T/p1.out ]] || fail "the first create finished before the second was refused"
assert_quota "$r" vms "a fourth VM while the third is still being created"
assert_jq "$r" '.error.message | test("4 in use")' "the create in flight counts as in use"
wait "$p1" || fail "the first create's client failed"
assert_jq "$(cat "$T/p1.out")" '.result.name == "p1"' "the create in flight then completes"
r=$(as_nobody "$(req quota.get)")
assert_jq "$r" '.result.use.vms == 4' "it counts once, as a VM (4 in use)"
as_nobody "$(req vm.delete '{"name":"p1"}')" >/dev/null
assert_jq "$(as_nobody "$(req quota.get)")" '.result.use.vms == 3' "deleting it gives it back"
import_params() { echo "{\"name\":\"$1\",\"kernel\":\"$T/kernel\",\"rootfs_dir\":\"$T/tree\",\"rootfs_size_mib\":600}"; }
as_nobody "$(req image.import "$(import_params i1)")" >"$T/i1.out" &
i1=$!
_ember_pids+=("$i1")
wait_helpers 1
r=$(as_nobody "$(req image.import "$(import_params i2)")")
[[ ! -s $T/i1.out ]] || fail "the first import finished before the second was refused"
assert_quota "$r" disk "a second 600 MiB import while the first is in flight"
assert_jq "$r" '.error.message | test("601 MiB in use|600 MiB in use")' "the import in flight holds its 600 MiB"
wait "$i1" || fail "the first import's client failed"
assert_jq "$(cat "$T/i1.out")" '.result.name == "i1"' "the import in flight then completes"
[[ -z $(rfind "$STATE/images" -mindepth 1 -maxdepth 1 -name '*i2*') ]] || fail "the refused import left something"
pass "the refused import left nothing"
r=$(as_nobody "$(req quota.get)")
assert_jq "$r" '.result.use.disk_mib == 601' "the stored image counts by its files (601 MiB)"
r=$(as_nobody "$(req image.delete '{"name":"i1"}')")
assert_jq "$r" '.result != null' "uid 65534 deletes it"
assert_jq "$(as_nobody "$(req quota.get)")" '.result.use.disk_mib == 0 and .result.use.vms == 3' \
	"nothing is left held"
unset EMBER_TEST_OPEN_AS_DELAY_MS
stop_emberd
