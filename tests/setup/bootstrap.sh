#!/usr/bin/env bash
# Everything the demo and the tests need on a fresh Debian 12 machine, installed idempotently:
# apt packages (podman, runc, debootstrap, ...), the controller virtualenv (.venv) from
# requirements-dev.txt, and the test-host image localhost/edge-llama-testhost:bookworm.
# Fast when already done.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=tests/setup/env.sh
. tests/setup/env.sh
say() { echo "edge-llama bootstrap: $*"; }

# 1. Distribution packages.
need=()
for pkg in podman runc debootstrap git ccache curl uidmap slirp4netns iproute2 python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2. Controller virtualenv.
stamp="$repo/.venv/.requirements-$(sha256sum requirements-dev.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "creating .venv from requirements-dev.txt"
  python3 -m venv "$repo/.venv"
  "$repo/.venv/bin/pip" install -q --upgrade pip
  "$repo/.venv/bin/pip" install -q -r requirements-dev.txt
  rm -f "$repo"/.venv/.requirements-*
  touch "$stamp"
fi

# 3. Test-host image: Debian bookworm minbase with systemd, like a freshly installed machine.
image=localhost/edge-llama-testhost:bookworm
if ! podman image exists "$image"; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/edge-llama-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  say "building $image with debootstrap from $mirror"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,python3,dbus,iproute2,sudo,ca-certificates,procps \
    bookworm "$rootfs" "$mirror" >/dev/null
  # Nothing in the image should try to reach the network at boot, and apt must use the same mirror.
  echo "deb $mirror bookworm main" > "$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/sbin/init"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi
say "ready ($(podman image inspect -f '{{.Id}}' "$image" | cut -c1-12) $image)"
