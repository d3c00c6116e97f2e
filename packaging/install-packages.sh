# Sourced by tests/run.sh and packaging/quickstart.sh (not run): installs the
# Debian packages named in the array PACKAGES that are not installed yet,
# with `apt-get update` first, only when something is missing. Without root
# it prints what to install and exits 1. $1 names the caller in messages.
# shellcheck shell=bash

install_packages() {
	local who=$1 missing=() p
	for p in "${PACKAGES[@]}"; do
		# shellcheck disable=SC2016 # ${Status} is dpkg-query's, not ours
		if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "$who: missing Debian packages: ${missing[*]}" >&2
		echo "$who: install them as root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	printf '\n==> %s: installing %s\n' "$who" "${missing[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}
