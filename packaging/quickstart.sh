#!/usr/bin/env bash
# ember quickstart: installs the build's Debian packages (only when some are
# missing), builds into build/plain, starts a private emberd on a fresh state
# directory under /tmp, walks through the control plane with emberctl, builds
# the ember-mini guest image, imports it as the default image, boots a QEMU VM
# from it, shows its console, and stops everything again. Each run uses its own state directory, so it can be run
# any number of times; the directory is removed when everything succeeded and
# kept (with emberd.log) when something failed.
set -euo pipefail

# Debian 12 packages to build and run ember (tests/run.sh has the test set).
PACKAGES=(
	build-essential cmake pkg-config
	libevent-dev libjansson-dev libyaml-dev libcurl4-openssl-dev check
	qemu-system-x86 qemu-utils e2fsprogs cpio kmod
)
START_TIMEOUT=10	# seconds for emberd to create its socket
STOP_TIMEOUT=15		# seconds for emberd to exit after SIGTERM
BOOT_TIMEOUT=60		# seconds for the guest to print its readiness line
# QEMU's accelerator: auto uses KVM when /dev/kvm opens read-write, else TCG.
# Set EMBER_QEMU_ACCEL=tcg where /dev/kvm exists but does not work (nested).
QEMU_ACCEL=${EMBER_QEMU_ACCEL:-auto}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

emberd_pid=""
state=""
ok=0

say() {
	printf '\n==> %s\n' "$*"
}

# stop_emberd: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Returns 0
# only when emberd exited by itself with status 0.
# Starts the private emberd with the config in $state and waits (with a
# deadline) for its socket.
start_emberd() {
	local deadline rc
	say "starting emberd (state $state, log $state/emberd.log)"
	"$EMBERD" --state-dir "$state" --socket "$socket" --config "$state/emberd.yaml" \
	    >>"$state/emberd.log" 2>&1 &
	emberd_pid=$!
	deadline=$((SECONDS + START_TIMEOUT))
	until [ -S "$socket" ]; do
		if ! kill -0 "$emberd_pid" 2>/dev/null; then
			wait "$emberd_pid" && rc=0 || rc=$?
			emberd_pid=""
			echo "quickstart: emberd exited with status $rc before creating $socket" >&2
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "quickstart: emberd did not create $socket within ${START_TIMEOUT}s" >&2
			exit 1
		fi
		sleep 0.1
	done
}

write_config() {
	printf 'default_image: mini\nqemu:\n  accel: %s\n' "$1" >"$state/emberd.yaml"
}

stop_emberd() {
	local pid=$emberd_pid deadline rc=0
	emberd_pid=""
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "quickstart: emberd did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		sleep 0.1
	done
	wait "$pid" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "quickstart: emberd exited with status $rc after SIGTERM" >&2
		return 1
	fi
}

on_exit() {
	if [ -n "$emberd_pid" ]; then
		stop_emberd || true
	fi
	if [ -n "$state" ]; then
		if [ "$ok" = 1 ]; then
			rm -rf "$state"
		else
			echo "quickstart: FAILED; state directory kept: $state" >&2
			if [ -f "$state/emberd.log" ]; then
				echo "quickstart: last lines of $state/emberd.log:" >&2
				tail -n 20 "$state/emberd.log" >&2
			fi
		fi
	fi
}
trap on_exit EXIT

# Echoes and runs an emberctl command against the private emberd.
ctl() {
	printf '\n$ emberctl %s\n' "$*"
	"$EMBERCTL" --socket "$socket" "$@"
}

say "checking Debian packages"
# shellcheck source=packaging/install-packages.sh
. packaging/install-packages.sh
install_packages quickstart

say "building into build/plain"
cmake -S . -B build/plain -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build/plain -j"$(nproc)"
EMBERD=$PWD/build/plain/daemon/emberd
EMBERCTL=$PWD/build/plain/client/emberctl

state=$(mktemp -d /tmp/ember-quickstart.XXXXXX)
socket=$state/emberd.sock

image_dir=$PWD/build/plain/image-mini
# The private emberd boots the mini image when vm create names none.
write_config "$QEMU_ACCEL"

start_emberd
ctl daemon info
ctl vm create demo --vsock --no-start
ctl vm list
ctl vm inspect demo
ctl vsock allocations

# --- BOOT A VM HERE -------------------------------------------------------
say "building the ember-mini guest image into $image_dir"
bash packaging/image/build-mini.sh "$image_dir"
boot_args=$(sed -n 's/^  "boot_args": "\(.*\)",$/\1/p' "$image_dir/image.json")
ctl image import mini --kernel "$image_dir/vmlinuz" --vmlinux "$image_dir/vmlinux" \
    --initrd "$image_dir/initrd.gz" --boot-args "$boot_args"
ctl image list

# No --image: the config's default_image (mini) is booted. Where /dev/kvm
# exists but cannot run guests (nested virtualization often), QEMU fails at
# once: say so and use TCG instead.
if ! ctl vm create hello; then
	if [ "$QEMU_ACCEL" != auto ]; then
		exit 1
	fi
	say "the guest did not start with accel auto (KVM unusable here?); retrying with TCG"
	stop_emberd
	write_config tcg
	start_emberd
	ctl vm create hello
fi
console=$state/vms/hello/console.log
printf '\nwaiting for the guest to print "EMBER-MINI READY" in %s\n' "$console"
deadline=$((SECONDS + BOOT_TIMEOUT))
until grep -q 'EMBER-MINI READY' "$console" 2>/dev/null; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "quickstart: the guest did not get ready within ${BOOT_TIMEOUT}s; its console:" >&2
		tail -n 20 "$console" >&2 || true
		exit 1
	fi
	sleep 0.2
done
say "the last lines of hello's console"
tail -n 5 "$console"
ctl vm inspect hello
ctl vm stop hello
ctl vm delete hello
# -------------------------------------------------------------------------

ctl vm delete demo

say "stopping emberd (pid $emberd_pid)"
stop_emberd

ok=1
say "quickstart finished: emberd, emberctl and a QEMU guest work"
