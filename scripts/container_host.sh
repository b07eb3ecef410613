#!/usr/bin/env bash
# Makes this host able to build and run the images without a registry (issue #18): podman and
# buildah from Debian, the two containers.conf settings they need on this kind of machine, and
# the Debian base image made with debootstrap and imported under the names the Dockerfile uses.
# Idempotent; needs root. Where a registry is reachable none of this is needed: `docker build`
# pulls the bases.
#   crun fails on this kernel's cgroups and when raising the file limit, hence runc; the default
#   nofile/nproc limits of a rootful container are too low for the server's --max-connections.
set -euo pipefail
base=${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}

need=()
for tool in podman buildah debootstrap runc slirp4netns fuse-overlayfs newuidmap; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah debootstrap fuse-overlayfs \
    uidmap runc slirp4netns >/dev/null
fi

conf=/etc/containers/containers.conf
if ! grep -q '^runtime = "runc"' "$conf" 2>/dev/null; then
  mkdir -p /etc/containers
  cat >> "$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
fi

if ! podman image exists "$base"; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
  # What the official slim image also leaves out, now and in later installs: documentation,
  # manual pages, translations, apt's caches, downloaded packages and lists.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
  cat > "$rootfs/etc/apt/apt.conf.d/slim" <<'APT'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
APT
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["bash"]' - "$base" >/dev/null
fi
podman image exists "$base"
echo "podman $(podman --version | awk '{print $3}'), base image $base"
