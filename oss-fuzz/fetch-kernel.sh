#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Fetches, at image build time (never at fuzz time), the kernel files the C side needs for
# every line pinned in kernel.lock, into <dest>/linux-<line>/ (e.g. $SRC/linux-6.12 and
# $SRC/linux-7.3); oss-fuzz/build.sh lays them out where build.rs reads them.
#
# Usage: bash -euo pipefail fetch-kernel.sh <path to kernel.lock> <dest>
# (The Dockerfiles run it exactly so: `bash script` ignores a `-eu` shebang, and a failed
# download must fail the image build.)
#
# Source per line: the kernel.org stable tarball of the upstream version of the line's Debian
# `version` (6.12.117-1~deb12u1 -> linux-6.12.117.tar.xz, 7.3.4-1~bpo13+1 -> linux-7.3.4).
# kernel.org URLs are permanent, while Debian's pool drops superseded linux-source packages,
# and the OSS-Fuzz images are Ubuntu, whose apt has no Debian linux-source-*.
# kernel.lock pins the sha256 of the files in Debian's package. Debian's changelogs for both
# pinned versions record no Debian patch to these files (only upstream stable updates), so
# the kernel.org files must hash the same; a file that does not is an error here: the Rust
# port models the pinned files, and fuzzing other code against it would report false
# divergences.
# Override the mirror with KERNEL_ORG_MIRROR=<url> (default https://cdn.kernel.org/pub/linux/kernel);
# `cargo xtask oss-fuzz` points it at a local file:// mirror.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: bash -euo pipefail $0 <kernel.lock> <dest>" >&2
    exit 2
fi
lock="$1"
dest="$2"
mirror="${KERNEL_ORG_MIRROR:-https://cdn.kernel.org/pub/linux/kernel}"

# One line per [line NAME] section: NAME VERSION FILE... (the files of its sha256 lines).
sections=$(awk '
    /^\[line / { name = $2; sub(/\]$/, "", name); names[++n] = name; next }
    /^version / { version[name] = $2; next }
    /^sha256 / { files[name] = files[name] " " $3; next }
    END { for (i = 1; i <= n; i++) print names[i], version[names[i]], files[names[i]] }
' "$lock")
if [ -z "$sections" ]; then
    echo "error: $lock has no [line NAME] section; restore kernel.lock from git" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
while read -r name version files; do
    upstream=${version%%-*}
    if ! [[ "$upstream" =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] || [ -z "$files" ]; then
        echo "error: kernel.lock [line $name]: cannot derive a kernel.org version from" \
             "'version $version', or no sha256 lines; restore kernel.lock from git" >&2
        exit 1
    fi
    major=${upstream%%.*}
    url="$mirror/v${major}.x/linux-${upstream}.tar.xz"
    out="$dest/linux-$name"
    echo "[fetch-kernel] line $name: $url -> $out"
    rm -rf "$out"
    mkdir -p "$out"
    if ! curl -fsSL --retry 3 -o "$work/linux.tar.xz" "$url"; then
        echo "error: cannot download $url (curl's message above). The image build needs" \
             "kernel.org (or KERNEL_ORG_MIRROR=<mirror of pub/linux/kernel>)." >&2
        exit 1
    fi
    members=()
    for f in $files; do members+=("linux-${upstream}/$f"); done
    tar -xJf "$work/linux.tar.xz" -C "$out" --strip-components=1 "${members[@]}"
    rm -f "$work/linux.tar.xz"
    for f in $files; do
        want=$(awk -v n="$name" -v f="$f" '
            /^\[line / { cur = $2; sub(/\]$/, "", cur); next }
            cur == n && $1 == "sha256" && $3 == f { print $2 }' "$lock")
        got=$(sha256sum "$out/$f" | cut -d' ' -f1)
        if [ "$got" != "$want" ]; then
            echo "error: linux-$upstream (kernel.org) $f has sha256 $got, but kernel.lock" \
                 "[line $name] pins $want (Debian $version). The pinned files are what the" \
                 "Rust side models; re-pin with 'cargo xtask kernel --update-lock' and check" \
                 "what Debian changed, or fix the mirror (KERNEL_ORG_MIRROR)." >&2
            exit 1
        fi
        echo "[fetch-kernel]   $f: sha256 $got matches kernel.lock"
    done
done <<< "$sections"
