#!/usr/bin/env bash
# Builds "ember-mini", ember's default guest image, from Debian packages only:
#   OUTDIR/vmlinuz     the Debian cloud kernel as shipped (bzImage, for QEMU)
#   OUTDIR/vmlinux     the same kernel as an uncompressed ELF (for Firecracker)
#   OUTDIR/initrd.gz   busybox-static, the virtio/vsock/ACPI-button modules,
#                      ember-agent and an /init script
#                      (packaging/image/mini-init.sh)
#   OUTDIR/image.json  what the files are, the boot arguments to use, and the
#                      identity of the inputs (sha256 of the agent, of these
#                      scripts and of the rc.local hook)
# Downloaded .debs and their extracted trees are kept in a cache directory, so
# a rebuild with everything cached takes a few seconds; the initramfs is always
# rebuilt.
#
# Every image has the guest agent. It is, in this order: $EMBER_AGENT;
# $EMBER_BUILD_DIR/packaging/agent/ember-agent; or the ember-agent target of
# this source tree, built with cmake in a private build directory under the
# cache. When none of these yields a static executable the build fails.
#
# Usage: build-mini.sh OUTDIR            build the image into OUTDIR
#        build-mini.sh --check OUTDIR    exit 0 when OUTDIR holds an image built
#                                        from exactly the inputs a build would
#                                        use now (agent, scripts, rc.local),
#                                        1 (saying why) when not
# Environment:
#   EMBER_IMAGE_CACHE  cache directory
#                      (default ${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/ember/image)
#   EMBER_AGENT        static guest agent binary to install as /sbin/ember-agent
#   EMBER_BUILD_DIR    a build tree whose packaging/agent/ember-agent to use
#   EMBER_RC_LOCAL     shell script to install as /etc/ember/rc.local
#
# The guest prints "EMBER-MINI READY <kernel release>" on the console once it
# is up (modules loaded, root disk mounted, rc hooks run, agent started). A
# QMP system_powerdown (ACPI power button) powers it off cleanly.
#
# Verified with QEMU 7.2.22 under TCG (KVM fails on the development machine)
# and kernel 6.1.0-56-cloud-amd64 (6.1.192-2, lz4-compressed bzImage):
#   qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256M -smp 1 \
#     -nodefaults -no-user-config -nographic -no-reboot \
#     -chardev file,id=con,path=console.log -serial chardev:con \
#     -qmp unix:qmp.sock,server=on,wait=off \
#     -global virtio-mmio.force-legacy=false \
#     -drive file=root.img,if=none,id=d0,format=raw \
#     -device virtio-blk-device,drive=d0 \
#     -kernel OUTDIR/vmlinuz -initrd OUTDIR/initrd.gz \
#     -append "console=ttyS0 reboot=t panic=-1 quiet initcall_blacklist=pci_arch_init root=/dev/vda tsc_early_khz=2596124" \
#     </dev/null
# (drop -drive/-device and root= for a diskless boot; tsc_early_khz is the
# host's TSC rate, see TCG_HINT below). On a 2-core host the guest reached
# READY at an uptime of 1.1-1.4 s when the host was quiet; with the host at
# load 15 from other work, READY came 8-13 s of wall time after QEMU
# started. QEMU exited within 1.2 s of a QMP system_powerdown every time. A
# rebuild with a warm cache costs about 3 s of CPU.
set -euo pipefail

prog=build-mini.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Boot arguments recorded in image.json. reboot=t plus QEMU's -no-reboot turn a
# guest reboot or panic into a QEMU exit; quiet leaves the console to /init's
# few lines (and errors). microvm and Firecracker have no PCI bus, and x86's
# PCI setup (pci_arch_init) then logs "PCI: Fatal: No config space access
# function found" at error level, which quiet does not hide (pci=off does not
# either); skipping that initcall leaves nothing to probe and nothing to say.
# A machine with PCI needs the image imported with other --boot-args.
BOOT_ARGS="console=ttyS0 reboot=t panic=-1 quiet initcall_blacklist=pci_arch_init"
HOSTNAME_DEFAULT=ember-mini
# Under TCG the guest calibrates its TSC against the emulated PIT; on a busy
# host that fails, the TSC is marked unstable, microvm offers no other clock
# and the boot hangs early. The guest TSC ticks at the host's rate under TCG,
# so giving the kernel that rate skips the calibration.
TCG_HINT="under TCG append tsc_early_khz=<host TSC kHz>, or a busy host can hang the boot"

# Modules the guest wants; their dependencies are added from modinfo, and any
# that this kernel has built in are skipped. button and evdev let busybox acpid
# see the ACPI power button that QEMU's system_powerdown presses.
WANTED_MODULES=(
	virtio_mmio virtio_pci
	virtio_blk virtio_net
	vsock vmw_vsock_virtio_transport
	ext4
	button evdev
)

die() {
	echo "$prog: $*" >&2
	exit 1
}

info() {
	echo "$prog: $*" >&2
}

is_elf() {
	[ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]
}

usage() {
	echo "usage: $prog [--check] OUTDIR" >&2
	exit 2
}

check_only=0
case ${1:-} in
-h | --help) usage ;;
--check)
	check_only=1
	shift
	;;
esac
[ $# -eq 1 ] || usage
outdir=$1

cache=${EMBER_IMAGE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/var/tmp}/.cache}/ember/image}
srcroot=$(cd "$here/../.." && pwd)

workdir=""
cleanup() {
	if [ -n "$workdir" ]; then rm -rf "$workdir"; fi
}
trap cleanup EXIT

# need_tools TOOL:PACKAGE...: installs the packages of missing tools when
# running as root, otherwise says what to install and exits.
need_tools() {
	local spec tool pkg missing=()
	for spec in "$@"; do
		tool=${spec%%:*}
		pkg=${spec#*:}
		if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ] &&
		    [ ! -x "/sbin/$tool" ]; then
			missing+=("$pkg")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing tools; install them as root: apt-get install ${missing[*]}"
	fi
	info "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# modinfo and depmod live in /usr/sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
export PATH

# --- the agent and the identity of the inputs ------------------------------

need_tools sha256sum:coreutils flock:util-linux

sha256_of() {
	local sum
	sum=$(sha256sum <"$1") || die "cannot read $1"
	echo "${sum%% *}"
}

# build_private_agent: builds this source tree's ember-agent target with
# cmake in a build directory of its own under the cache (one per source
# tree, locked against concurrent builds) and prints the binary's path.
build_private_agent() {
	local dir key log
	key=$(printf '%s' "$srcroot" | sha256sum)
	dir=$cache/agent-build-${key:0:12}
	log=$dir.log
	[ -f "$srcroot/packaging/agent/CMakeLists.txt" ] ||
	    die "no ember-agent given (set EMBER_AGENT or EMBER_BUILD_DIR) and no source tree at $srcroot to build one"
	if ! command -v cmake >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
		die "no ember-agent given (set EMBER_AGENT or EMBER_BUILD_DIR) and no cmake and cc to build one: apt-get install build-essential cmake pkg-config libevent-dev libjansson-dev libyaml-dev libcurl4-openssl-dev"
	fi
	mkdir -p "$cache"
	info "building ember-agent in $dir (log: $log)"
	(
		flock -w 600 9 || die "cannot lock $dir.lock"
		cmake -S "$srcroot" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		    -DEMBER_TESTS=OFF >"$log" 2>&1 &&
		    cmake --build "$dir" --target ember-agent -j"$(nproc)" >>"$log" 2>&1
	) 9>"$dir.lock" || {
		tail -n 20 "$log" >&2
		die "building ember-agent failed; see $log, or set EMBER_AGENT to a static ember-agent"
	}
	echo "$dir/packaging/agent/ember-agent"
}

# resolve_agent: sets agent to the ember-agent to install, or fails.
resolve_agent() {
	if [ -n "${EMBER_AGENT:-}" ]; then
		agent=$EMBER_AGENT
		[ -f "$agent" ] || die "EMBER_AGENT=$agent is not a file"
	elif [ -n "${EMBER_BUILD_DIR:-}" ] &&
	    [ -f "$EMBER_BUILD_DIR/packaging/agent/ember-agent" ]; then
		agent=$EMBER_BUILD_DIR/packaging/agent/ember-agent
	else
		if [ -n "${EMBER_BUILD_DIR:-}" ]; then
			info "$EMBER_BUILD_DIR has no packaging/agent/ember-agent; building one"
		fi
		agent=$(build_private_agent)
	fi
	[ -x "$agent" ] || die "ember-agent $agent is not executable"
	is_elf "$agent" || die "ember-agent $agent is not an ELF executable"
	# The initramfs has no libc: a dynamically linked agent would not start.
	if command -v readelf >/dev/null 2>&1 &&
	    readelf -lW "$agent" 2>/dev/null | grep -q 'program interpreter'; then
		die "ember-agent $agent is dynamically linked; the image has no libc (build the ember-agent target, which links statically)"
	fi
}

# Identity of what goes into the image besides Debian's packages, recorded in
# image.json so that callers can tell a stale image by content, not by time.
resolve_agent
agent_sha256=$(sha256_of "$agent")
scripts_sha256=$(cd "$here" && cat build-mini.sh mini-init.sh mini-shutdown.sh | sha256sum)
scripts_sha256=${scripts_sha256%% *}
rc_local_sha256=none
if [ -n "${EMBER_RC_LOCAL:-}" ]; then
	[ -f "$EMBER_RC_LOCAL" ] || die "EMBER_RC_LOCAL=$EMBER_RC_LOCAL is not a file"
	rc_local_sha256=$(sha256_of "$EMBER_RC_LOCAL")
fi

# recorded KEY: the string value of KEY in OUTDIR/image.json ("" if none).
recorded() {
	sed -n "s/^ *\"$1\": \"\([^\"]*\)\",\{0,1\}\$/\1/p" "$outdir/image.json" 2>/dev/null | head -n 1
}

if [ "$check_only" = 1 ]; then
	[ -f "$outdir/image.json" ] || { info "no image in $outdir"; exit 1; }
	for f in vmlinuz vmlinux initrd.gz; do
		[ -s "$outdir/$f" ] || { info "$outdir/$f is missing"; exit 1; }
	done
	stale=""
	[ "$(recorded agent_sha256)" = "$agent_sha256" ] || stale+=" agent ($agent)"
	[ "$(recorded scripts_sha256)" = "$scripts_sha256" ] || stale+=" image scripts"
	[ "$(recorded rc_local_sha256)" = "$rc_local_sha256" ] || stale+=" rc.local"
	if [ -n "$stale" ]; then
		info "$outdir is stale: changed since it was built:$stale"
		exit 1
	fi
	exit 0
fi

need_tools apt-get:apt apt-cache:apt dpkg-deb:dpkg modinfo:kmod cpio:cpio \
    gzip:gzip

# Builds into different OUTDIRs share the download cache: its downloads,
# extractions and the vmlinux taken out of the bzImage are made by one build
# at a time (held on fd 8 until this script exits).
mkdir -p "$cache"
exec 8>"$cache/.lock"
flock -w 600 8 || die "cannot lock $cache/.lock (another build-mini.sh holds it)"

apt_opts=()
if [ "$(id -u)" -eq 0 ]; then
	# As root, apt's download sandbox user cannot write into root's cache
	# directory; download as root instead of warning about it every time.
	apt_opts=(-o APT::Sandbox::User=root)
fi

# apt_update_once: as root, refreshes apt's package lists (once per run)
# when they do not know a package, as on a fresh machine whose lists were
# never downloaded or were cleaned.
apt_updated=0
apt_update_once() {
	[ "$(id -u)" -eq 0 ] && [ "$apt_updated" = 0 ] || return 1
	apt_updated=1
	info "apt knows no version of $1; running apt-get update"
	apt-get -q update >&2 || die "apt-get update failed"
}

# candidate_version PKG: the version apt would download.
candidate_version() {
	local v
	v=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
	if { [ -z "$v" ] || [ "$v" = "(none)" ]; } && apt_update_once "$1"; then
		v=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		die "apt knows no version of $1 — run apt-get update (as root) first"
	fi
	echo "$v"
}

# fetch_deb PKG: prints the path of PKG's candidate .deb in the cache,
# downloading it only when it is not there yet.
fetch_deb() {
	local pkg=$1 ver debs tmp
	ver=$(candidate_version "$pkg")
	mkdir -p "$cache/debs"
	shopt -s nullglob
	debs=("$cache/debs/${pkg}_${ver//:/%3a}_"*.deb)
	shopt -u nullglob
	if [ ${#debs[@]} -eq 0 ]; then
		info "downloading $pkg $ver"
		tmp=$(mktemp -d "$cache/debs/.download.XXXXXX")
		if ! (cd "$tmp" && apt-get "${apt_opts[@]}" -q download "$pkg=$ver" >&2); then
			rm -rf "$tmp"
			die "apt-get download $pkg=$ver failed"
		fi
		mv "$tmp"/*.deb "$cache/debs/"
		rm -rf "$tmp"
		shopt -s nullglob
		debs=("$cache/debs/${pkg}_${ver//:/%3a}_"*.deb)
		shopt -u nullglob
		[ ${#debs[@]} -eq 1 ] || die "downloaded $pkg but cannot find its .deb in $cache/debs"
	fi
	echo "${debs[0]}"
}

# extract_deb DEB: prints the directory DEB is extracted into, extracting it
# once (a .done stamp marks a complete extraction).
extract_deb() {
	local deb=$1 dir
	dir=$cache/tree/$(basename "$deb" .deb)
	if [ ! -e "$dir.done" ]; then
		rm -rf "$dir"
		mkdir -p "$dir"
		dpkg-deb -x "$deb" "$dir" || die "dpkg-deb -x $deb failed"
		touch "$dir.done"
	fi
	echo "$dir"
}

# extract_vmlinux BZIMAGE OUT: finds the compressed kernel inside BZIMAGE and
# decompresses it to OUT, the way the kernel's scripts/extract-vmlinux does:
# try every offset where a known compressor's magic occurs until one
# decompresses to an ELF file. PREFERRED (from CONFIG_KERNEL_*) is tried first.
extract_vmlinux() {
	local img=$1 out=$2 preferred=$3 method name hex tool pattern off i
	# name:magic in hex:decompressor reading stdin
	local methods=(
		"gzip:1f8b08:gzip -dc"
		"xz:fd377a585a00:xz -dc"
		"bzip2:425a68:bzip2 -dc"
		"lzma:5d000000:xz --format=lzma -dc"
		"lzo:894c5a4f:lzop -dc"
		"lz4:02214c18:lz4 -dc"
		"zstd:28b52ffd:zstd -dc"
	)
	local ordered=()
	for method in "${methods[@]}"; do
		if [ "${method%%:*}" = "$preferred" ]; then
			ordered=("$method" "${ordered[@]}")
		else
			ordered+=("$method")
		fi
	done
	for method in "${ordered[@]}"; do
		name=${method%%:*}
		hex=${method#*:}
		hex=${hex%%:*}
		tool=${method##*:}
		command -v "${tool%% *}" >/dev/null 2>&1 || continue
		pattern=""
		for ((i = 0; i < ${#hex}; i += 2)); do
			pattern+="\\x${hex:i:2}"
		done
		while IFS= read -r off; do
			# The decompressors complain about the bytes that follow
			# the payload; what matters is whether an ELF came out.
			# shellcheck disable=SC2086 # $tool is a command and its options
			tail -c +"$((off + 1))" "$img" | $tool >"$out" 2>/dev/null || true
			if [ -s "$out" ] && is_elf "$out"; then
				info "vmlinux: $name payload at offset $off"
				return 0
			fi
		done < <(LC_ALL=C grep -obUaP "$pattern" "$img" | cut -d: -f1)
	done
	rm -f "$out"
	return 1
}

# --- kernel -----------------------------------------------------------------

kernel_package() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
kpkg=$(kernel_package)
if [ -z "$kpkg" ] && apt_update_once linux-image-cloud-amd64; then
	kpkg=$(kernel_package)
fi
[ -n "$kpkg" ] ||
    die "cannot resolve linux-image-cloud-amd64 to a versioned kernel package — run apt-get update (as root) first"
kver=$(candidate_version "$kpkg")
kdeb=$(fetch_deb "$kpkg")
ktree=$(extract_deb "$kdeb")

shopt -s nullglob
kimages=("$ktree"/boot/vmlinuz-*)
shopt -u nullglob
[ ${#kimages[@]} -eq 1 ] || die "expected one boot/vmlinuz-* in $kdeb, found ${#kimages[@]}"
krel=${kimages[0]##*/vmlinuz-}
kconfig=$ktree/boot/config-$krel
moddir=$ktree/lib/modules/$krel
[ -f "$kconfig" ] || die "$kdeb has no boot/config-$krel"
[ -d "$moddir" ] || die "$kdeb has no lib/modules/$krel"

# CONFIG_KERNEL_<METHOD>=y names the compressor of the bzImage payload.
kcomp=$(sed -n 's/^CONFIG_KERNEL_\(GZIP\|XZ\|BZIP2\|LZMA\|LZO\|LZ4\|ZSTD\)=y$/\1/p' "$kconfig" |
    tr '[:upper:]' '[:lower:]')
case $kcomp in
gzip) need_tools gzip:gzip ;;
xz | lzma) need_tools xz:xz-utils ;;
bzip2) need_tools bzip2:bzip2 ;;
lzo) need_tools lzop:lzop ;;
lz4) need_tools lz4:lz4 ;;
zstd) need_tools zstd:zstd ;;
*) info "kernel config names no known compression; trying every decompressor present" ;;
esac

vmlinux_cache=$ktree.vmlinux
if [ ! -s "$vmlinux_cache" ] || ! is_elf "$vmlinux_cache"; then
	extract_vmlinux "${kimages[0]}" "$vmlinux_cache.tmp" "$kcomp" ||
	    die "no ELF kernel found inside ${kimages[0]} (compression: ${kcomp:-unknown})"
	mv "$vmlinux_cache.tmp" "$vmlinux_cache"
fi

# --- busybox ----------------------------------------------------------------

bbver=$(candidate_version busybox-static)
bbtree=$(extract_deb "$(fetch_deb busybox-static)")
busybox=$bbtree/bin/busybox
[ -x "$busybox" ] || die "busybox-static has no bin/busybox"

# --- modules ----------------------------------------------------------------

# Module name (dashes as underscores) -> path of its .ko[.xz|.zst|.gz].
declare -A modpath=()
while IFS= read -r -d '' f; do
	m=${f##*/}
	m=${m%%.ko*}
	modpath[${m//-/_}]=$f
done < <(find "$moddir" -name '*.ko*' -print0)

declare -A builtin=()
if [ -f "$moddir/modules.builtin" ]; then
	while IFS= read -r f; do
		m=${f##*/}
		m=${m%.ko}
		builtin[${m//-/_}]=1
	done <"$moddir/modules.builtin"
fi

# visit MODULE: appends MODULE to load_order after its dependencies
# (depth-first topological sort over modinfo's depends field).
declare -A mark=()
load_order=()
visit() {
	local m=${1//-/_} deps d
	case ${mark[$m]:-} in
	done) return 0 ;;
	active) die "module dependency cycle through $m" ;;
	esac
	if [ -n "${builtin[$m]:-}" ]; then
		mark[$m]="done"
		return 0
	fi
	[ -n "${modpath[$m]:-}" ] || die "module $m is neither built into $krel nor shipped in $kpkg"
	mark[$m]=active
	deps=$(modinfo -F depends "${modpath[$m]}") || die "modinfo ${modpath[$m]} failed"
	for d in ${deps//,/ }; do
		visit "$d"
	done
	mark[$m]="done"
	load_order+=("$m")
}
for m in "${WANTED_MODULES[@]}"; do
	visit "$m"
done
info "modules in load order: ${load_order[*]}"

# --- initramfs --------------------------------------------------------------

workdir=$(mktemp -d)
root=$workdir/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,mnt/root,etc/ember,etc/acpi/PWRF,var/log,lib/modules/"$krel"}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"

# busybox --install -s, done by hand on the build host: one symlink per applet
# at the path busybox itself lists.
while IFS= read -r applet; do
	[ -n "$applet" ] || continue
	if [ "$applet" != bin/busybox ] && [ ! -e "$root/$applet" ] &&
	    [ ! -L "$root/$applet" ]; then
		ln -s /bin/busybox "$root/$applet"
	fi
done < <("$busybox" --list-full)
for applet in sh mount insmod poweroff acpid sleep; do
	[ -L "$root/bin/$applet" ] || [ -L "$root/sbin/$applet" ] ||
	    [ -L "$root/usr/bin/$applet" ] || [ -L "$root/usr/sbin/$applet" ] ||
	    die "busybox $bbver lacks the $applet applet"
done

# Modules, decompressed so that busybox insmod can load them, and their order.
for m in "${load_order[@]}"; do
	src=${modpath[$m]}
	dst=$root/lib/modules/$krel/$m.ko
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) need_tools xz:xz-utils && xz -dc "$src" >"$dst" ;;
	*.ko.zst) need_tools zstd:zstd && zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
	echo "$m.ko" >>"$root/lib/modules/$krel/ember.order"
done
touch "$root/lib/modules/$krel/ember.order"

install -m 0755 "$here/mini-init.sh" "$root/init"
install -m 0755 "$here/mini-shutdown.sh" "$root/sbin/ember-shutdown"
# busybox acpid maps the power button (evdev KEY_POWER) to action
# PWRF/00000080 and runs /etc/acpi/PWRF/00000080.
printf '#!/bin/sh\nexec /sbin/ember-shutdown poweroff\n' >"$root/etc/acpi/PWRF/00000080"
chmod 0755 "$root/etc/acpi/PWRF/00000080"
echo "$HOSTNAME_DEFAULT" >"$root/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

install -m 0755 "$agent" "$root/sbin/ember-agent"
[ "$(sha256_of "$root/sbin/ember-agent")" = "$agent_sha256" ] ||
    die "$agent changed while the image was being built; build again"
info "ember-agent: $agent (sha256 $agent_sha256)"
if [ -n "${EMBER_RC_LOCAL:-}" ]; then
	install -m 0755 "$EMBER_RC_LOCAL" "$root/etc/ember/rc.local"
fi

# --- output -----------------------------------------------------------------

mkdir -p "$outdir"
(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --quiet) | gzip -9n >"$outdir/.initrd.gz.tmp"
cp "${kimages[0]}" "$outdir/.vmlinuz.tmp"
cp "$vmlinux_cache" "$outdir/.vmlinux.tmp"

json_list() {
	local first=1 x
	printf '['
	for x in "$@"; do
		[ $first -eq 1 ] || printf ', '
		first=0
		printf '"%s"' "$x"
	done
	printf ']'
}
{
	printf '{\n'
	printf '  "name": "mini",\n'
	printf '  "kernel": "vmlinuz",\n'
	printf '  "vmlinux": "vmlinux",\n'
	printf '  "initrd": "initrd.gz",\n'
	printf '  "boot_args": "%s",\n' "$BOOT_ARGS"
	printf '  "kernel_release": "%s",\n' "$krel"
	printf '  "kernel_package": "%s",\n' "$kpkg"
	printf '  "kernel_version": "%s",\n' "$kver"
	printf '  "busybox_version": "%s",\n' "$bbver"
	printf '  "modules": %s,\n' "$(json_list "${load_order[@]}")"
	printf '  "ready_line": "EMBER-MINI READY",\n'
	printf '  "tcg_hint": "%s",\n' "$TCG_HINT"
	printf '  "agent": "/sbin/ember-agent",\n'
	printf '  "agent_sha256": "%s",\n' "$agent_sha256"
	printf '  "scripts_sha256": "%s",\n' "$scripts_sha256"
	printf '  "rc_local_sha256": "%s",\n' "$rc_local_sha256"
	printf '  "built_at": "%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf '}\n'
} >"$outdir/.image.json.tmp"

for f in vmlinuz vmlinux initrd.gz image.json; do
	mv -f "$outdir/.$f.tmp" "$outdir/$f"
done
info "built ember-mini ($krel) in $outdir"
