#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-only
#
# Fetches, at image build time (never at fuzz time), the three kernel files the C side needs
# into $SRC/linux, for the Linux version pinned in kernel.lock.
# Usage: fetch-kernel.sh <path to kernel.lock> <destination tree>
#
# Source: the kernel.org stable tarball of the upstream version in kernel.lock's `version`
# line (6.12.117-1~deb12u1 -> linux-6.12.117.tar.xz). kernel.org URLs are permanent, while
# Debian's pool drops superseded linux-source-6.12 packages, and the OSS-Fuzz images are
# Ubuntu, whose apt has no Debian linux-source-6.12. kernel.lock holds the sha256 of the
# files in Debian's package; build.sh reports, file by file, whether the fetched files match
# it (a difference, e.g. a Debian-only patch, is reported, not fatal).
# Alternative on a Debian-based image: `apt-get download linux-source-6.12` and
# `dpkg-deb --fsys-tarfile ... | tar -xO ./usr/src/linux-source-6.12.tar.xz | tar -xJ <files>`
# (what `cargo xtask kernel` does); the OSS-Fuzz images are Ubuntu, which lacks that package.
# Override with KERNEL_TARBALL_URL=<url of a linux-*.tar.xz>.
lock="$1"
dest="$2"
version=$(sed -n 's/^version \([0-9][0-9.]*\).*/\1/p' "$lock")
if [ -z "$version" ]; then
    echo "error: no version line in $lock" >&2
    exit 1
fi
major=${version%%.*}
url="${KERNEL_TARBALL_URL:-https://cdn.kernel.org/pub/linux/kernel/v${major}.x/linux-${version}.tar.xz}"
files="arch/arm64/kvm/hyp/pgtable.c arch/arm64/include/asm/kvm_pgtable.h arch/arm64/include/asm/stage2_pgtable.h"
mkdir -p "$dest"
echo "fetching $url -> $dest"
prefix=$(basename "$url" .tar.xz)
members=""
for f in $files; do members="$members $prefix/$f"; done
# shellcheck disable=SC2086
curl -fsSL --retry 3 "$url" | tar -xJ -C "$dest" --strip-components=1 $members
for f in $files; do
    test -f "$dest/$f"
    sha256sum "$dest/$f"
done
