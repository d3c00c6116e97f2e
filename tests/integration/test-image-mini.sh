#!/usr/bin/env bash
# The ember-mini guest image (packaging/image/build-mini.sh): builds it into
# $EMBER_BUILD_DIR/image-mini (downloads are cached, see EMBER_IMAGE_CACHE)
# under the lock that qemu-lib.sh's ensure_image takes, checks the outputs
# (this build's ember-agent is in the initramfs and its sha256 in image.json;
# --check accepts the image and rejects it for another agent; a missing or
# dynamically linked agent fails the build), then boots it under QEMU TCG on
# microvm with an ext4 root disk and ember.debug=1, and asserts that the
# guest prints "EMBER-MINI READY" and no PCI error, loads its virtio and vsock
# modules, starts the agent, runs the disk's ember-rc hook (which writes a
# marker file onto the disk), and powers off on a QMP system_powerdown.
# Finally it boots a copy of the initramfs without the agent and expects
# /init's "NO AGENT" line. A boot that never gets ready is retried once: TCG
# boots occasionally hang early.
set -euo pipefail

src=${EMBER_SOURCE_DIR:?set EMBER_SOURCE_DIR to the source tree}
build=${EMBER_BUILD_DIR:?set EMBER_BUILD_DIR to the build tree}
for tool in qemu-system-x86_64 socat mkfs.ext4 debugfs cpio flock; do
	if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ] &&
	    [ ! -x "/sbin/$tool" ]; then
		echo "SKIP: $tool not installed"
		exit 77
	fi
done
PATH=$PATH:/usr/sbin:/sbin

READY_DEADLINE=60	# seconds from QEMU start to the READY line
EXIT_DEADLINE=30	# seconds from system_powerdown to QEMU's exit

img=$build/image-mini
agent=$build/packaging/agent/ember-agent
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

[[ -x $agent ]] || { fail "no ember-agent at $agent (build the ember-agent target)"; exit 1; }
build_mini() { EMBER_BUILD_DIR=$build bash "$src/packaging/image/build-mini.sh" "$@"; }

# The same lock as ensure_image (tests/integration/qemu-lib.sh): tests that
# boot the shared image wait while it is rewritten.
start=$SECONDS
if ! (
	flock -w 600 9 || { echo "cannot lock $build/image-mini.lock" >&2; exit 1; }
	build_mini "$img"
) 9>"$build/image-mini.lock" >"$dir/build.log" 2>&1; then
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

# --- the agent and the image's identity -------------------------------------------

agent_sum=$(sha256sum <"$agent" | cut -d' ' -f1)
recorded=$(sed -n 's/^ *"agent_sha256": "\([0-9a-f]*\)",$/\1/p' "$img/image.json")
if [[ $recorded == "$agent_sum" ]]; then
	pass "image.json records the agent's sha256 ${agent_sum:0:12}..."
else
	fail "image.json agent_sha256 '$recorded', the build's agent has $agent_sum"
fi
grep -qE '"scripts_sha256": "[0-9a-f]{64}"' "$img/image.json" ||
    fail "image.json has no scripts_sha256"
mkdir -p "$dir/initrd"
(cd "$dir/initrd" && gzip -dc "$img/initrd.gz" | cpio -idm --quiet) ||
    fail "cannot unpack $img/initrd.gz"
if [[ -f $dir/initrd/sbin/ember-agent ]] &&
    [[ $(sha256sum <"$dir/initrd/sbin/ember-agent" | cut -d' ' -f1) == "$agent_sum" ]]; then
	pass "the initramfs holds this build's agent as /sbin/ember-agent"
else
	fail "the initramfs has no /sbin/ember-agent identical to $agent"
fi
if build_mini --check "$img" >"$dir/check.log" 2>&1; then
	pass "build-mini.sh --check accepts the image it just built"
else
	fail "build-mini.sh --check rejects the image it just built: $(cat "$dir/check.log")"
fi
# Same bytes, newer file: still fresh (identity, not time).
cp "$agent" "$dir/agent-copy"
touch -d '+1 hour' "$dir/agent-copy"
if EMBER_AGENT=$dir/agent-copy build_mini --check "$img" >"$dir/check.log" 2>&1; then
	pass "--check accepts a newer copy of the same agent"
else
	fail "--check rejects a byte-identical agent: $(cat "$dir/check.log")"
fi
# Other bytes: stale, and the reason names the agent.
printf 'x' >>"$dir/agent-copy"
if EMBER_AGENT=$dir/agent-copy build_mini --check "$img" >"$dir/check.log" 2>&1; then
	fail "--check accepts the image for a different agent"
elif grep -q 'stale.*agent' "$dir/check.log"; then
	pass "--check calls the image stale for another agent: $(cat "$dir/check.log")"
else
	fail "--check failed without saying the agent changed: $(cat "$dir/check.log")"
fi
# No agent, or one that cannot run in the image: the build fails, saying why.
if EMBER_AGENT=$dir/no-such-agent build_mini "$dir/out-missing" >"$dir/missing.log" 2>&1; then
	fail "build-mini.sh succeeded with a missing agent"
elif grep -q 'no-such-agent is not a file' "$dir/missing.log" && [[ ! -e $dir/out-missing ]]; then
	pass "a missing agent fails the build: $(tail -n 1 "$dir/missing.log")"
else
	fail "a missing agent: $(cat "$dir/missing.log")"
fi
dynamic=$(command -v sh)
if EMBER_AGENT=$dynamic build_mini "$dir/out-dynamic" >"$dir/dynamic.log" 2>&1; then
	fail "build-mini.sh accepted the dynamically linked $dynamic as the agent"
elif grep -q 'dynamically linked' "$dir/dynamic.log"; then
	pass "a dynamically linked agent fails the build"
else
	fail "a dynamically linked agent: $(cat "$dir/dynamic.log")"
fi

# --- root disk ------------------------------------------------------------------

mkdir -p "$dir/disk"
cat >"$dir/disk/ember-rc" <<'EOF'
echo "marker from $(uname -r)" >"$EMBER_ROOT/ember-rc-ran"
EOF
truncate -s 32M "$dir/root.img"
mkfs.ext4 -q -F -d "$dir/disk" "$dir/root.img"

# --- boot -----------------------------------------------------------------------

tsc_arg=
if khz=$(host_tsc_khz) && [[ -n $khz ]]; then
	tsc_arg=" tsc_early_khz=$khz"
fi

# boot LABEL INITRD APPEND [QEMU-ARGS...]: starts QEMU in the background;
# sets qemu_pid and con.
boot() {
	local label=$1 initrd=$2 append=$3
	shift 3
	con=$dir/console-$label.log
	rm -f "$dir/qmp.sock"
	: >"$con"
	qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256M -smp 1 \
	    -nodefaults -no-user-config -nographic -no-reboot \
	    -chardev "file,id=con,path=$con" -serial chardev:con \
	    -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
	    -global virtio-mmio.force-legacy=false "$@" \
	    -kernel "$img/vmlinuz" -initrd "$initrd" -append "$append" \
	    </dev/null >"$dir/qemu-$label.log" 2>&1 &
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

# boot_ready LABEL INITRD APPEND [QEMU-ARGS...]: boot until READY, with one
# more attempt when the first never gets there; 1 when neither did.
boot_ready() {
	local label=$1 attempt start
	shift
	for attempt in 1 2; do
		boot "$label-$attempt" "$@"
		start=$SECONDS
		if wait_ready; then
			pass "$label: EMBER-MINI READY after $((SECONDS - start)) s (attempt $attempt)"
			return 0
		fi
		echo "$label attempt $attempt: no READY line within $READY_DEADLINE s; console tail:" >&2
		tail -n 5 "$con" | sed 's/^/  console: /' >&2
		sed 's/^/  qemu: /' "$dir/qemu-$label-$attempt.log" >&2
		stop_qemu
	done
	return 1
}

if ! boot_ready disk "$img/initrd.gz" "$boot_args ember.debug=1 root=/dev/vda$tsc_arg" \
    -drive "file=$dir/root.img,if=none,id=d0,format=raw" -device virtio-blk-device,drive=d0; then
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
if grep -q 'PCI' "$log"; then
	fail "PCI noise on the console: $(grep 'PCI' "$log")"
else
	pass "no PCI messages on the console"
fi
if grep -q 'ember-mini: .*started /sbin/ember-agent' "$log" && ! grep -q 'NO AGENT' "$log"; then
	pass "/init started the agent"
else
	fail "/init did not start /sbin/ember-agent"
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

# --- an image without its agent -----------------------------------------------------

# build-mini.sh refuses to build one, so remove the agent from a copy of the
# initramfs unpacked above.
rm -f "$dir/initrd/sbin/ember-agent"
(cd "$dir/initrd" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --quiet | gzip -1n) >"$dir/no-agent.gz"
first_con=$con
if boot_ready no-agent "$dir/no-agent.gz" "$boot_args$tsc_arg"; then
	noagent=$(tr -d '\r' <"$con" | grep 'NO AGENT' || true)
	if [[ $noagent == "ember-mini: NO AGENT: /sbin/ember-agent is missing"* ]]; then
		pass "without an agent /init says so: $noagent"
	else
		fail "no 'NO AGENT' line on the console of a guest without an agent"
	fi
else
	fail "the guest without an agent never printed EMBER-MINI READY"
fi
stop_qemu
con=$first_con

if ((failures > 0)); then
	echo "--- console ---" >&2
	cat "$con" >&2
	echo "$failures failure(s)" >&2
	exit 1
fi
echo "all image-mini checks passed"
