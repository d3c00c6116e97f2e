#!/usr/bin/env bash
# Two VMs talk to each other by CID under TCG. VM b runs ember.echo=5000;
# VM a's root disk has an ember-rc that connects to b's CID on port 5000 with
# ember-agent (through emberd: a's device asks b's hybrid vsock.sock for
# "CONNECT 5000"), sends "ping-b" and prints the echo, then 256 KiB of random
# bytes whose md5 must come back unchanged, and finally tries a CID that no
# VM holds, which must be reset at once. b is created first, so its CID is
# known when a's disk is built.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/vsock-lib.sh"

ensure_agent_image
start_emberd
ctl image import echo --kernel "$IMAGE_DIR/vmlinuz" --initrd "$IMAGE_DIR/initrd.gz" \
    --boot-args "$BOOT_ARGS ember.echo=5000" >/dev/null || fail "image import echo"
ctl vm create b --image echo --vsock --no-start >/dev/null || fail "vm create b"
cid_b=$(field b .vsock.guest_cid)
[[ $cid_b -ge 3 ]] || fail "b has no CID: $cid_b"
pass "b has CID $cid_b"
nocid=$((cid_b + 100))

mkdir -p "$T/rootdir"
cat >"$T/rootdir/ember-rc" <<EOF
#!/bin/sh
# Waits (at most about 30 s) for b's echo service, then talks to it.
n=0
until r=\$(echo ping-b | ember-agent connect $cid_b 5000 2>&1) && [ -n "\$r" ]; do
	n=\$((n + 1))
	echo "A2B-TRY \$n: \$r"
	[ \$n -lt 10 ] || break
	sleep 0.5
done
echo "A2B-REPLY tries=\$n [\$r]"
dd if=/dev/urandom of=/tmp/d bs=1024 count=256 2>/dev/null
echo "A2B-DATA sent=\$(md5sum </tmp/d | cut -d' ' -f1) back=\$(ember-agent connect $cid_b 5000 </tmp/d | md5sum | cut -d' ' -f1)"
t0=\$(cut -d' ' -f1 /proc/uptime)
e=\$(echo x | ember-agent connect $nocid 5000 2>&1)
rc=\$?
t1=\$(cut -d' ' -f1 /proc/uptime)
echo "A2NOBODY rc=\$rc t0=\$t0 t1=\$t1 [\$e]"
EOF
ctl image import peer --kernel "$IMAGE_DIR/vmlinuz" --initrd "$IMAGE_DIR/initrd.gz" \
    --boot-args "$BOOT_ARGS" --rootfs-dir "$T/rootdir" --rootfs-size 16M >/dev/null ||
    fail "image import peer"
ctl vm create a --image peer --vsock --no-start >/dev/null || fail "vm create a"
cid_a=$(field a .vsock.guest_cid)
pass "a has CID $cid_a; its ember-rc talks to CID $cid_b"

start_booted b
wait_agent b
start_booted a
c=$(console_since a "$BOOT_OFFSET")

line=$(grep 'A2B-REPLY' <<<"$c") || fail "no A2B-REPLY on a's console: $(tail -n 20 <<<"$c")"
echo "$line"
grep -q '\[ping-b\]' <<<"$line" || fail "a did not get its ping echoed by b: $line"
pass "a reached b's echo service by CID $cid_b"

line=$(grep 'A2B-DATA' <<<"$c") || fail "no A2B-DATA on a's console"
echo "$line"
sent=$(sed -n 's/.*sent=\([0-9a-f]*\).*/\1/p' <<<"$line")
back=$(sed -n 's/.*back=\([0-9a-f]*\).*/\1/p' <<<"$line")
[[ ${#sent} == 32 ]] || fail "no md5 of the data sent: $line"
assert_eq "$sent" "$back" "256 KiB from a came back from b unchanged (md5)"

line=$(grep 'A2NOBODY' <<<"$c") || fail "no A2NOBODY on a's console"
echo "$line"
grep -q 'rc=1 ' <<<"$line" || fail "connecting to CID $nocid did not fail: $line"
grep -qi 'connection reset' <<<"$line" || fail "connecting to CID $nocid was not reset: $line"
t0=$(sed -n 's/.* t0=\([0-9.]*\) .*/\1/p' <<<"$line")
t1=$(sed -n 's/.* t1=\([0-9.]*\) .*/\1/p' <<<"$line")
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 1.5) }' ||
    fail "the reset for CID $nocid took $t0 -> $t1 s"
pass "a CID no VM holds ($nocid) is reset at once"

# The host still reaches both.
vclient connect "$(vsock_of b)" 5000 --bytes 65536 --timeout 60 || fail "host -> b after the VM-to-VM traffic"
wait_agent a 10
pass "the host still reaches a and b"
ctl vm stop a >/dev/null || fail "vm stop a"
ctl vm stop b >/dev/null || fail "vm stop b"
stop_emberd

# a_is_refused PEER WHY: boots PEER (an echo VM holding CID $cid_b), then a,
# whose ember-rc must be reset on every try; stops both.
a_is_refused() {
	local c line
	start_booted "$1"
	wait_agent "$1"
	start_booted a
	c=$(console_since a "$BOOT_OFFSET")
	line=$(grep 'A2B-REPLY' <<<"$c") || fail "no A2B-REPLY on a's console: $(tail -n 20 <<<"$c")"
	echo "$line"
	grep -q '\[ping-b\]' <<<"$line" && fail "a reached $1 ($2): $line"
	grep -qi 'connection reset' <<<"$line" || fail "a's connection to $1 was not reset: $line"
	pass "a's connection to $1 is reset: $2"
	ctl vm stop a >/dev/null || fail "vm stop a"
	ctl vm stop "$1" >/dev/null || fail "vm stop $1"
}

note "with vsock.vm_to_vm off, a guest cannot reach another VM"
printf 'vsock:\n  vm_to_vm: false\n' >>"$CONFIG"
start_emberd
a_is_refused b "vm_to_vm is off"
stop_emberd

if command -v setpriv >/dev/null && [[ $(id -u) == 0 ]]; then
	note "VM to VM is for VMs of the same owner only"
	sed -i '/^vsock:/,$d' "$CONFIG"	# vm_to_vm back to its default, on
	start_emberd
	ctl vm delete b >/dev/null || fail "vm delete b"
	chmod o+x "$T" "$STATE"
	chmod 0666 "$SOCK"
	# uid 65534 creates b2, which gets b's freed CID, the one a's ember-rc dials.
	r=$(printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"vm.create","params":{"name":"b2","image":"echo","vsock":true,"start":false}}' |
	    timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups socat -t 15 - "UNIX-CONNECT:$SOCK")
	assert_eq "$cid_b" "$(jq -r .result.vsock.guest_cid <<<"$r")" "uid 65534's b2 has CID $cid_b"
	a_is_refused b2 "b2 belongs to another owner"
	stop_emberd
fi
echo "PASS"
