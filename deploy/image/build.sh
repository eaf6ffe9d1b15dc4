#!/usr/bin/env bash
# `make image`: the project's image (deploy/image/Containerfile) built here without a registry, then
# smoke-tested. Needs root (apt-get for mmdebstrap and buildah, chroot). Prints progress on stderr.
#
#   SAIL_IMAGE     the tag (default sail-stream:0.1.0, DeployOptions.image's default)
#   SAIL_IMAGE_OUT also write the image there as an OCI archive (for `podman load`, `ctr import`, a registry push)
#   SAIL_IMAGE_CA_BUNDLE  the CA bundle pip trusts during the build (default: this host's system bundle)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tag=${SAIL_IMAGE:-sail-stream:0.1.0}
base=localhost/sail-stream-base:bookworm
cache=${XDG_CACHE_HOME:-$HOME/.cache}/sail-stream/image
mirror=${SAIL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { echo "image: $*" >&2; }
began=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  say "needs root: mmdebstrap and buildah write a root file system and the smoke test uses chroot"
  exit 2
fi
need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v podman >/dev/null 2>&1 || need+=(podman)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} with apt-get"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
# vfs storage and chroot isolation: no overlay mounts, user namespaces or OCI runtime needed to build
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
mkdir -p "$cache"

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  say "base: Debian bookworm (minbase + python3) from $mirror with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    bookworm "$cache/bookworm.tar" "$mirror" >&2
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$cache/bookworm.tar" / >/dev/null
  buildah commit --quiet --rm "$ctr" "$base" >/dev/null
  rm -f "$cache/bookworm.tar"
  say "base: $base ($(( $(date +%s) - began )) s)"
else
  say "base: $base (already built)"
fi

say "building $tag from deploy/image/Containerfile (the Python packages come from PyPI: several minutes)"
# The build host's CA bundle (with whatever CA its TLS-inspecting proxy needs) over the image's, for pip only
ca=${SAIL_IMAGE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
volumes=()
[ -f "$ca" ] && volumes=(-v "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
buildah bud --quiet --isolation chroot --layers=false "${volumes[@]}" -f "$root/deploy/image/Containerfile" -t "$tag" "$root" >&2
built=$(( $(date +%s) - began ))
size=$(buildah images --format '{{.Size}}' "$tag" | head -1)
say "built $tag in $built s ($size)"
if [ -n "${SAIL_IMAGE_OUT:-}" ]; then
  buildah push --quiet "$tag" "oci-archive:$SAIL_IMAGE_OUT:$tag" >&2
  say "wrote $SAIL_IMAGE_OUT"
fi

# Smoke test: the entry point answers --help as the pods' user, in a container when podman can start
# one here, otherwise in a chroot of the image's file system.
# (limits no higher than this host allows, and no cgroups: podman's defaults ask for more than a sandbox gives)
podman_run=(podman --cgroup-manager=cgroupfs run --rm --network host --cgroups=disabled
  --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
if out=$("${podman_run[@]}" "$tag" --help 2>&1); then
  say "podman run $tag --help: ok"
else
  say "podman cannot run containers here: $(echo "$out" | tail -1)"
  ctr=$(buildah from --quiet "$tag")
  mnt=$(buildah mount "$ctr")
  trap 'buildah umount "$ctr" >/dev/null; buildah rm "$ctr" >/dev/null' EXIT
  out=$(chroot --userspec=10001:10001 "$mnt" /usr/bin/env HOME=/tmp PATH=/opt/sail/bin:/usr/bin:/bin sail-stream --help)
  say "chroot of the image: sail-stream --help ok"
fi
echo "$out" | head -3 >&2
say "done in $(( $(date +%s) - began )) s: $tag"
