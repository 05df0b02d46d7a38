#!/usr/bin/env bash
# Everything the demo and the tests need on a fresh Debian 12 machine, installed idempotently:
# apt packages (podman, runc, debootstrap, ...), the controller virtualenv (.venv) from
# requirements-dev.txt, olah's own virtualenv (.cache/olah-venv), qemu-aarch64 in binfmt_misc, and the
# test-host images localhost/edge-llama-testhost:bookworm and localhost/edge-llama-testhost-arm64:bookworm.
# Fast when already done (about a second).
# Usage: tests/setup/bootstrap.sh [--for test|demo|unit]     then: . tests/setup/env.sh
#   test (default): everything; demo: no browser, no qemu, no arm64 image (make demo needs none of
#   them); unit: the apt basics and the controller virtualenv only (make unit, make lint).
# Overrides: EDGE_LLAMA_TESTHOST_IMAGE, EDGE_LLAMA_TESTHOST_ARM64_IMAGE (image names),
# EDGE_LLAMA_DEBIAN_MIRROR (debootstrap mirror).
set -euo pipefail
purpose=test
if [ "${1:-}" = "--for" ]; then purpose=${2:?usage: bootstrap.sh [--for test|demo|unit]}; fi
case "$purpose" in test|demo|unit) ;; *) echo "bootstrap.sh: --for test, demo or unit, not '$purpose'" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
# shellcheck source=tests/setup/env.sh
. tests/setup/env.sh
say() { echo "edge-llama bootstrap: $*"; }
t0=$(date +%s)

# 1. Distribution packages. netavark/aardvark-dns/iptables: podman's network stack (netavark
# runs iptables, which apt only recommends; with
# --no-install-recommends apt would pick the older CNI plugins instead). chromium: the browser the
# client tests drive with Playwright (its own browser download is not used), fonts-liberation to
# render the page's text (chromium only recommends it), libnss3-tools: certutil, to make a browser trust the
# gateway's site CA the way a user's Chromium does (its NSS database); util-linux: nsenter, which those tests use
# to reach a test host's loopback. qemu-user-static and binfmt-support: the arm64 test host (the
# Orin's architecture) runs aarch64 programs through qemu, registered with the kernel's binfmt_misc.
# haproxy: the unit tests of library/gateway_rotation.py drive a real HAProxy (its runtime API); Debian's
# stock configuration has no frontend, so the service the package starts listens on nothing.
need=()
packages=(git curl python3-venv ca-certificates rsync openssh-client haproxy)
if [ "$purpose" != unit ]; then
  packages+=(podman runc netavark aardvark-dns iptables uidmap slirp4netns debootstrap ccache iproute2 util-linux)
fi
if [ "$purpose" = test ]; then
  packages+=(chromium fonts-liberation libnss3-tools qemu-user-static binfmt-support)
fi
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  say "apt packages present"
fi

# 2. Controller virtualenv (stamp = hash of requirements-dev.txt).
stamp="$repo/.venv/.requirements-$(sha256sum requirements-dev.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "creating .venv from requirements-dev.txt"
  python3 -m venv "$repo/.venv"
  "$repo/.venv/bin/python" -m pip install -q --upgrade pip
  "$repo/.venv/bin/python" -m pip install -q -r requirements-dev.txt
  rm -f "$repo"/.venv/.requirements-*
  touch "$stamp"
else
  say ".venv up to date"
fi

if [ "$purpose" = unit ]; then
  say "ready for unit tests and lint in $(( $(date +%s) - t0 )) s"
  exit 0
fi

# 3. olah (the Hugging Face mirror) in its own virtualenv: it is a server, not something the tests
# import, and keeping its dependencies (fastapi-utils, peewee, GitPython...) out of .venv lets
# each side move its pins alone.
olah_spec="olah==0.5.4"
olah_stamp="$EDGE_LLAMA_CACHE/olah-venv/.installed-$olah_spec"
if [ ! -f "$olah_stamp" ]; then
  say "installing $olah_spec into .cache/olah-venv"
  python3 -m venv "$EDGE_LLAMA_CACHE/olah-venv"
  "$EDGE_LLAMA_CACHE/olah-venv/bin/python" -m pip install -q "$olah_spec"
  rm -f "$EDGE_LLAMA_CACHE"/olah-venv/.installed-*
  touch "$olah_stamp"
else
  say "olah-venv up to date"
fi

# 4. (test only) qemu-aarch64 registered with binfmt_misc (flag F: the interpreter is opened now, so it also
# runs inside containers). Machines without systemd do not mount binfmt_misc by themselves.
if [ "$purpose" = test ]; then
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
  fi
  grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || { say "qemu-aarch64 is not enabled in binfmt_misc" >&2; exit 1; }
fi

# 5. The SSH keys the playbooks reach the test hosts with, as a user's inventory reaches an Orin: the
# controller's client key (installed as root's authorized key in each host), one host key that every
# test host serves (bind-mounted, so a rebuilt image keeps it) and the known_hosts entry for it
# (StrictHostKeyChecking stays on). Made once, kept in .cache/ssh (0700).
ssh_dir="$EDGE_LLAMA_CACHE/ssh"
install -d -m 0700 "$ssh_dir"
for key in id_ed25519 ssh_host_ed25519_key; do
  [ -f "$ssh_dir/$key" ] || ssh-keygen -q -t ed25519 -N '' -C "edge-llama-$key" -f "$ssh_dir/$key"
done
cp "$ssh_dir/id_ed25519.pub" "$ssh_dir/authorized_keys"
echo "* $(cut -d' ' -f1,2 "$ssh_dir/ssh_host_ed25519_key.pub")" > "$ssh_dir/known_hosts"
chmod 0600 "$ssh_dir/authorized_keys" "$ssh_dir/known_hosts"

# 6. Test-host images: Debian bookworm minbase with systemd and sshd, like a freshly installed machine;
# one for this machine's architecture and one arm64 (debootstrap runs its second stage under qemu).
# The same mirror as this machine's apt (first URIs: line of the deb822 sources).
mirror=${EDGE_LLAMA_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
# Bump when the image recipe changes: an image with another edge-llama.image label is rebuilt.
image_version=3
build_image() {  # image arch
  local image=$1 arch=$2 rootfs t1
  if [ "$(podman image inspect -f '{{index .Config.Labels "edge-llama.image"}}' "$image" 2>/dev/null)" = "$image_version" ]; then
    say "image $image present"; return 0
  fi
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/edge-llama-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
  say "building $image ($arch) with debootstrap from $mirror (1-2 minutes)"
  t1=$(date +%s)
  debootstrap --arch="$arch" --variant=minbase \
    --include=systemd,systemd-sysv,python3,dbus,iproute2,sudo,ca-certificates,procps,openssh-server \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  echo "deb $mirror bookworm main" > "$rootfs/etc/apt/sources.list"
  # binfmt_misc is the kernel's, shared with this machine and every container: a test host's
  # systemd-binfmt.service would unregister every entry when the container stops (its ExecStop runs
  # systemd-binfmt --unregister), qemu-aarch64 included, and the arm64 host could no longer run.
  for unit in systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # sshd: root with the set-up's key only; the host key is bind-mounted at start (tests/molecule/*,
  # tests/setup/demo.sh), none is baked into the image.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  cat > "$rootfs/etc/ssh/sshd_config.d/edge-llama-testhost.conf" <<'EOT'
# edge-llama test host: reached over SSH as root with the controller's key, like an Orin.
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
EOT
  install -d -m 0700 "$rootfs/root/.ssh"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --arch "$arch" --change 'CMD ["/sbin/init"]' \
    --change "LABEL edge-llama.image=$image_version" - "$image" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "image $image built in $(( $(date +%s) - t1 )) s"
}
image=${EDGE_LLAMA_TESTHOST_IMAGE:-localhost/edge-llama-testhost:bookworm}
arm64_image=${EDGE_LLAMA_TESTHOST_ARM64_IMAGE:-localhost/edge-llama-testhost-arm64:bookworm}
build_image "$image" "$(dpkg --print-architecture)"
if [ "$purpose" = test ]; then
  build_image "$arm64_image" arm64
  say "ready in $(( $(date +%s) - t0 )) s ($(podman image inspect -f '{{.Id}}' "$image" | cut -c1-12) $image," \
      "$(podman image inspect -f '{{.Id}}' "$arm64_image" | cut -c1-12) $arm64_image)"
else
  say "ready for the demo in $(( $(date +%s) - t0 )) s ($(podman image inspect -f '{{.Id}}' "$image" | cut -c1-12) $image)"
fi
say "use: . tests/setup/env.sh   (CONTAINERS_CONF=$CONTAINERS_CONF)"
