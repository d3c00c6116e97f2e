# Helpers for the OCI image tests (test-oci-*.sh; sourced after lib.sh or
# qemu-lib.sh). build_oci_image makes a small OCI image in the test's own
# directory with umoci: busybox-static as /bin/busybox (and its applets) plus
# /entry.sh, a script that prints what it sees (arguments, $FOO, the working
# directory, uid:gid), with $FAKE_EXIT set keeps printing a false
# "EMBER-WORKLOAD-EXIT code=$FAKE_EXIT" line from a background process,
# sleeps $SLEEP_FOR seconds if set, and exits with $EXIT_WITH, or kills
# itself with $KILL_WITH. Nothing comes from the network.
# start_oci_store_emberd starts the emberd that the image store tests
# (test-oci-import.sh, test-oci-registry.sh) share.

for tool in skopeo umoci busybox; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (apt-get install skopeo umoci busybox-static)"; exit 77; }
done
BUSYBOX=$(command -v busybox)
ldd "$BUSYBOX" >/dev/null 2>&1 && { echo "SKIP: $BUSYBOX is not static (install busybox-static)"; exit 77; }

# build_oci_image LAYOUT TAG: the image described above as LAYOUT:TAG, with
# Entrypoint /entry.sh, Cmd "first", Env FOO=bar PATH=/bin, WorkingDir /work,
# User 1000:1000, a label and an exposed port.
build_oci_image() {
	local layout=$1 tag=$2 bundle=$T/oci-bundle.$$ root
	umoci init --layout "$layout" || fail "umoci init"
	umoci new --image "$layout:$tag" || fail "umoci new"
	umoci unpack --rootless --image "$layout:$tag" "$bundle" >/dev/null || fail "umoci unpack"
	root=$bundle/rootfs
	mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/work" \
	    "$root/etc"
	chmod 1777 "$root/tmp"
	cp "$BUSYBOX" "$root/bin/busybox"
	for a in sh echo cat id pwd kill sleep ls env; do ln -s busybox "$root/bin/$a"; done
	printf 'root:x:0:0:root:/:/bin/sh\napp:x:1000:1000:app:/work:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\napp:x:1000:\n' >"$root/etc/group"
	echo "image file" >"$root/etc/image-marker"
	cat >"$root/entry.sh" <<'SCRIPT'
#!/bin/sh
echo "entry: args=[$*] FOO=$FOO pwd=$(pwd) id=$(id -u):$(id -g)"
if [ -n "$FAKE_EXIT" ]; then
	# A workload lying about its end: this line on the console until the guest is off.
	(while :; do echo "EMBER-WORKLOAD-EXIT code=$FAKE_EXIT"; sleep 0.1; done) &
fi
if [ -n "$SLEEP_FOR" ]; then sleep "$SLEEP_FOR"; fi
if [ -n "$KILL_WITH" ]; then kill -"$KILL_WITH" $$; fi
exit "${EXIT_WITH:-0}"
SCRIPT
	chmod 0755 "$root/entry.sh"
	chown -R 1000:1000 "$root/work"
	umoci repack --image "$layout:$tag" "$bundle" >/dev/null || fail "umoci repack"
	umoci config --image "$layout:$tag" --config.entrypoint /entry.sh --config.cmd first \
	    --config.env FOO=bar --config.env PATH=/bin --config.workingdir /work \
	    --config.user 1000:1000 --config.label org.example.test=yes \
	    --config.exposedports 8080/tcp || fail "umoci config"
	rm -rf "$bundle"
}

# start_oci_store_emberd: after socket_group_setup, starts emberd with
# socket_group $GROUP, sets GID to that group's id and defines ctl (emberctl
# as root), nctl (as uid 65534 in the group) and store_names (the entries
# of the image store, hidden ones included, once any .trash-* that emberd
# is removing off its loop is gone; 15 s at most).
start_oci_store_emberd() {
	GID=$(getent group "$GROUP" | cut -d: -f3)
	printf 'socket_group: %s\n' "$GROUP" >"$T/emberd.yaml"
	EMBERD_EXTRA=(--config "$T/emberd.yaml")
	start_emberd
	ctl() { "$EMBERCTL" --socket "$SOCK" "$@"; }
	nctl() { setpriv --reuid=65534 --regid=65534 --groups="$GID" -- "$EMBERCTL" --socket "$SOCK" "$@"; }
	store_names() {
		local deadline=$((SECONDS + 15))
		while compgen -G "$STATE/images/.trash-*" >/dev/null && ((SECONDS < deadline)); do
			sleep 0.05	# poll interval
		done
		rfind "$STATE/images" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | tr '\n' ' '
	}
}
