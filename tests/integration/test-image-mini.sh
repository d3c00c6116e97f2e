#!/usr/bin/env bash
# The ember-mini guest image (packaging/image/build-mini.sh): builds it into
# $EMBER_BUILD_DIR/image-mini (downloads are cached, see EMBER_IMAGE_CACHE),
# checks the outputs, then boots it under QEMU TCG on microvm with an ext4
# root disk and ember.debug=1, and asserts that the guest prints
# "EMBER-MINI READY", loads its virtio and vsock modules, runs the disk's
# ember-rc hook (which writes a marker file onto the disk), and powers off on
# a QMP system_powerdown. A boot that never gets ready is retried once: TCG
# boots occasionally hang early.
set -euo pipefail

src=${EMBER_SOURCE_DIR:?set EMBER_SOURCE_DIR to the source tree}
build=${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR to the build tree}
for tool in qemu-system-x86_64 socat mkfs.ext4 debugfs; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ] &&
	    [ ! -x "/sbin/$tool" ]; then
		echo "SKIP: $tool not installed"
		exit 0
	fi
done
PATH=$PATH:/usr/sbin:/sbin

READY_DEADLINE=60	# seconds from QEMU start to the READY line
EXIT_DEADLINE=30	# seconds from system_powerdown to QEMU's exit

img=$build/image-mini
dir=$(mktemp -d)
qemu_pid=
cleanup() {
	if [[ -n $qemu_pid ]]; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# host_tsc_khz: the host's TSC frequency in kHz. Under TCG the guest's TSC
# ticks at the host's rate; passing it as tsc_early_khz= spares the guest its
# PIT calibration, which fails on a busy host and then hangs the boot (no
# other clock source exists on microvm).
host_tsc_khz() {
	local mhz
	mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p' | head -n 1)
	if [[ -z $mhz ]]; then
		mhz=$(awk -F: '/^cpu MHz/ { gsub(/ /, "", $2); print $2; exit }' /proc/cpuinfo)
	fi
	[[ -n $mhz ]] && awk -v m="$mhz" 'BEGIN { printf "%d\n", m * 1000 }'
}

# --- build --------------------------------------------------------------------

start=$SECONDS
if ! "$src/packaging/image/build-mini.sh" "$img" >"$dir/build.log" 2>&1; then
	sed 's/^/  build: /' "$dir/build.log" >&2
	fail "build-mini.sh $img failed"
	exit 1
fi
pass "image built in $((SECONDS - start)) s"

for f in vmlinuz vmlinux initrd.gz image.json; do
	[[ -s $img/$f ]] || fail "$img/$f is missing or empty"
done
if [[ $(head -c 4 "$img/vmlinux" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
	pass "vmlinux is an ELF file"
else
	fail "vmlinux is not an ELF file"
fi
for key in '"name": "mini"' '"kernel": "vmlinuz"' '"initrd": "initrd.gz"' \
    '"boot_args": "' '"kernel_release": "'; do
	grep -qF "$key" "$img/image.json" || fail "image.json lacks $key"
done
boot_args=$(sed -n 's/^ *"boot_args": "\(.*\)",$/\1/p' "$img/image.json")
krel=$(sed -n 's/^ *"kernel_release": "\(.*\)",$/\1/p' "$img/image.json")
[[ -n $boot_args && -n $krel ]] || fail "cannot read boot_args and kernel_release from image.json"

# --- root disk ------------------------------------------------------------------

mkdir -p "$dir/disk"
cat >"$dir/disk/ember-rc" <<'EOF'
echo "marker from $(uname -r)" >"$EMBER_ROOT/ember-rc-ran"
EOF
truncate -s 32M "$dir/root.img"
mkfs.ext4 -q -F -d "$dir/disk" "$dir/root.img"

# --- boot -----------------------------------------------------------------------

append="$boot_args ember.debug=1 root=/dev/vda"
if khz=$(host_tsc_khz) && [[ -n $khz ]]; then
	append+=" tsc_early_khz=$khz"
fi

# boot N: starts QEMU (attempt N) in the background; sets qemu_pid and con.
boot() {
	con=$dir/console-$1.log
	rm -f "$dir/qmp.sock"
	: >"$con"
	qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256M -smp 1 \
	    -nodefaults -no-user-config -nographic -no-reboot \
	    -chardev "file,id=con,path=$con" -serial chardev:con \
	    -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
	    -global virtio-mmio.force-legacy=false \
	    -drive "file=$dir/root.img,if=none,id=d0,format=raw" \
	    -device virtio-blk-device,drive=d0 \
	    -kernel "$img/vmlinuz" -initrd "$img/initrd.gz" -append "$append" \
	    </dev/null >"$dir/qemu-$1.log" 2>&1 &
	qemu_pid=$!
}

# wait_ready: polls the console until the READY line, QEMU's exit, or the
# deadline; 0 when READY.
wait_ready() {
	local deadline=$((SECONDS + READY_DEADLINE))
	while ((SECONDS < deadline)); do
		grep -q '^EMBER-MINI READY' "$con" && return 0
		kill -0 "$qemu_pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

stop_qemu() {
	kill "$qemu_pid" 2>/dev/null || true
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=
}

ready=0
for attempt in 1 2; do
	boot "$attempt"
	start=$SECONDS
	if wait_ready; then
		ready=1
		pass "EMBER-MINI READY after $((SECONDS - start)) s (attempt $attempt)"
		break
	fi
	echo "attempt $attempt: no READY line within $READY_DEADLINE s; console tail:" >&2
	tail -n 5 "$con" | sed 's/^/  console: /' >&2
	sed 's/^/  qemu: /' "$dir/qemu-$attempt.log" >&2
	stop_qemu
done
if ((ready == 0)); then
	fail "the guest never printed EMBER-MINI READY"
	exit 1
fi

# The serial console ends lines with CR LF.
log=$dir/console.txt
tr -d '\r' <"$con" >"$log"
if grep -qx "EMBER-MINI READY $krel" "$log"; then
	pass "READY line names kernel $krel"
else
	fail "READY line is not 'EMBER-MINI READY $krel': $(grep '^EMBER-MINI READY' "$log")"
fi
[[ $(grep -c '^EMBER-MINI READY' "$log") -eq 1 ]] || fail "more than one READY line"
mods=$(grep -o 'ember-mini: \[[0-9.]*\] modules: .*' "$log" || true)
for m in virtio_mmio virtio_blk virtio_net vmw_vsock_virtio_transport button evdev; do
	[[ " $mods " == *" $m "* ]] || fail "module $m is not loaded (${mods:-no module list})"
done
grep -q 'ember-mini: .*mounted /dev/vda (ext4) at /mnt/root' "$log" ||
    fail "the root disk was not mounted"
if grep -q 'insmod .* failed' "$log"; then
	fail "a module failed to load: $(grep 'insmod .* failed' "$log")"
fi

# --- power down -------------------------------------------------------------------

reply=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"system_powerdown"}' |
    socat -t 5 - "UNIX-CONNECT:$dir/qmp.sock" || true)
[[ $(grep -c '"return": {}' <<<"$reply") -eq 2 ]] ||
    fail "system_powerdown was not acknowledged: $reply"
start=$SECONDS
deadline=$((SECONDS + EXIT_DEADLINE))
while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS < deadline)); do
	sleep 0.2
done
if kill -0 "$qemu_pid" 2>/dev/null; then
	fail "QEMU still runs $EXIT_DEADLINE s after system_powerdown"
	tail -n 5 "$con" | sed 's/^/  console: /' >&2
	stop_qemu
else
	rc=0
	wait "$qemu_pid" || rc=$?
	qemu_pid=
	if [[ $rc -eq 0 ]]; then
		pass "guest powered off $((SECONDS - start)) s after system_powerdown"
	else
		fail "QEMU exited with status $rc after system_powerdown"
	fi
	grep -q 'ember-mini: poweroff' "$con" || fail "the guest did not run its poweroff path"
fi

marker=$(debugfs -R 'cat /ember-rc-ran' "$dir/root.img" 2>/dev/null || true)
if [[ $marker == "marker from $krel" ]]; then
	pass "ember-rc on the root disk ran and wrote to the disk"
else
	fail "marker file from ember-rc: '${marker}', expected 'marker from $krel'"
fi

if ((failures > 0)); then
	echo "--- console ---" >&2
	cat "$con" >&2
	echo "$failures failure(s)" >&2
	exit 1
fi
echo "all image-mini checks passed"
