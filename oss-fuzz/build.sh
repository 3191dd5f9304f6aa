#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# OSS-Fuzz / ClusterFuzzLite build script for kvm-pgtable-diff. OSS-Fuzz runs it through the
# one-line projects/kvm-pgtable-diff/build.sh that `cargo xtask oss-fuzz-project` generates,
# ClusterFuzzLite through .clusterfuzzlite/build.sh, and `cargo xtask oss-fuzz` under an
# emulated OSS-Fuzz environment.
#
# Input (set by OSS-Fuzz's `compile`, or by `cargo xtask oss-fuzz`):
#   SRC, OUT, WORK   source, output and scratch directories; the repository is $SRC/kvm-pgtable-diff
#   SANITIZER        address | undefined | coverage
#   CC, CFLAGS       the C side (the kernel's pgtable.c) is compiled with exactly these: build.rs
#                    uses $CC, the cc crate appends $CFLAGS after build.rs' own flags, and
#                    build.rs adds -fsanitize=fuzzer-no-link / -fsanitize=address only when a
#                    fuzzing build's CFLAGS lack them (never in coverage builds, whose CFLAGS
#                    carry -fprofile-instr-generate -fcoverage-mapping instead).
#   RUSTFLAGS        --cfg fuzzing, the sanitizer (address) or -Cinstrument-coverage (coverage).
# Kernel source, per line of kernel.lock (6.12 and 7.3): $SRC/linux-<line> (fetched at image
# build time by oss-fuzz/fetch-kernel.sh), else .cache/linux-source-<line> (a developer
# checkout: `cargo xtask kernel`). Either must hash as kernel.lock pins, or the build stops.
# Optional:
#   LINUX_SRC        a kernel tree that replaces the pinned line of its API generation (build.rs)
#   LIBCLANG_PATH    directory of libclang.so for bindgen (searched when unset)
#   CARGO_TARGET_DIR cargo's target directory (default: fuzz/target)
#
# Output, per fuzz target T (one per fuzz/fuzz_targets/T.rs):
#   $OUT/T                   the libFuzzer binary
#   $OUT/T_seed_corpus.zip   fuzz/corpus/T/*, each file named by the sha1 of its content
#   $OUT/T.dict              oss-fuzz/kvm-pgtable-diff.dict (op tags, literal-mode values)
#   $OUT/T.options           oss-fuzz/kvm-pgtable-diff.options ([libfuzzer] max_len, timeout)
set -euo pipefail

log() { echo "[build.sh] $*"; }
die() {
    echo "[build.sh] error: $*" >&2
    exit 1
}

PROJECT="$SRC/kvm-pgtable-diff"
cd "$PROJECT"
WORK="${WORK:-$(mktemp -d)}"
SANITIZER="${SANITIZER:-address}"

# --- Kernel source: one tree per kernel.lock line, where build.rs reads it ------------------
# "HASH PATH" per sha256 line of section [line $1].
pinned() {
    awk -v n="$1" '/^\[line / { cur = $2; sub(/\]$/, "", cur); next }
                   cur == n && $1 == "sha256" { print $2, $3 }' kernel.lock
}
# The first way tree $1 differs from kernel.lock's [line $2]; nothing when it matches.
problem() {
    local hash path got
    while read -r hash path; do
        if [ ! -f "$1/$path" ]; then
            echo "$1 has no $path"
            return
        fi
        got=$(sha256sum "$1/$path" | cut -d' ' -f1)
        if [ "$got" != "$hash" ]; then
            echo "$1/$path has sha256 $got, kernel.lock [line $2] pins $hash"
            return
        fi
    done < <(pinned "$2")
}
lines=$(sed -n 's/^\[line \(.*\)\]$/\1/p' kernel.lock)
[ -n "$lines" ] || die "kernel.lock has no [line NAME] section; restore it from git"
if [ -n "${LINUX_SRC:-}" ]; then
    log "LINUX_SRC=$LINUX_SRC replaces the pinned line of its API generation (build.rs decides)"
fi
for line in $lines; do
    image_tree="$SRC/linux-$line"
    cache=".cache/linux-source-$line"
    if [ -d "$image_tree" ]; then
        p=$(problem "$image_tree" "$line")
        [ -z "$p" ] || die "$p. The image's kernel source is not the pinned one; rebuild the" \
            "image (its fetch-kernel.sh step checks kernel.lock)."
        if [ ! -e "$cache" ]; then
            mkdir -p .cache
            # -a keeps the files' times, so rebuilding in the same tree recompiles nothing.
            cp -a "$image_tree" "$cache"
            log "kernel line $line: $image_tree -> $cache (matches kernel.lock)"
            continue
        fi
    fi
    if [ -e "$cache" ]; then
        p=$(problem "$cache" "$line")
        [ -z "$p" ] || die "$p. Run: cargo xtask kernel --line $line (or delete $cache)"
        log "kernel line $line: $cache (matches kernel.lock)"
    elif [ -n "${LINUX_SRC:-}" ]; then
        log "kernel line $line: no pinned source; only LINUX_SRC can stand in for it"
    else
        die "no kernel source for line $line: expected $image_tree (the Dockerfile's" \
            "fetch-kernel.sh step) or $PROJECT/$cache (cargo xtask kernel)"
    fi
done

# --- libclang for bindgen -------------------------------------------------------------------
# The base images delete their own /usr/local/lib/libclang*; the Dockerfiles install the
# distribution's and point LIBCLANG_PATH at it.
if [ -z "${LIBCLANG_PATH:-}" ]; then
    for d in /usr/lib/llvm-22/lib /usr/local/lib $(ls -d /usr/lib/llvm-*/lib 2>/dev/null | sort -rV) \
             /usr/lib/x86_64-linux-gnu; do
        if compgen -G "$d/libclang.so*" >/dev/null || compgen -G "$d/libclang-[0-9]*.so*" >/dev/null; then
            export LIBCLANG_PATH="$d"
            break
        fi
    done
fi
log "LIBCLANG_PATH=${LIBCLANG_PATH:-<not found; bindgen will search itself>}"

# --- UBSan: the runtime rustc does not link -------------------------------------------------
# Rust has no -Zsanitizer=undefined, so `compile` gives Rust no sanitizer flag and rustc links
# no UBSan runtime, while the C side's objects (CFLAGS: -fsanitize=...) call
# __ubsan_handle_*. The link driver is clang (base-builder-rust sets
# CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=clang); -fsanitize=undefined makes it add its
# runtime, the one matching $CC. A `cc` (GCC) driver would pull GCC's libubsan instead.
if [ "$SANITIZER" = "undefined" ]; then
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER:-${CC:-clang}}"
    export RUSTFLAGS="${RUSTFLAGS:-} -Clink-arg=-fsanitize=undefined"
fi
log "CC=${CC:-<unset>} CFLAGS=${CFLAGS:-}"
log "RUSTFLAGS=${RUSTFLAGS:-}"

# --- Build -----------------------------------------------------------------------------------
# cargo-fuzz's own sanitizer flag must agree with SANITIZER (undefined: none for Rust, see
# above). With SANITIZER=coverage, base-builder-rust's `cargo` wrapper turns this command
# into a debug `cargo build --bins` with RUSTFLAGS' -Cinstrument-coverage and copies the
# binaries to .../x86_64-unknown-linux-gnu/release.
case "$SANITIZER" in
    address | memory | thread) CARGO_FUZZ_SANITIZER="$SANITIZER" ;;
    *) CARGO_FUZZ_SANITIZER=none ;;
esac
# -O -a: optimised, with debug assertions and overflow checks. An overflow in rust-pgtable
# where the kernel's C arithmetic is defined (u64 wraps) is a bug in the port, and the
# harness' own assertions are part of the oracle; `compile` itself passes neither.
# --no-trace-compares: no compare hooks in the Rust code, whose compares mirror pgtable.c's;
# it makes the fuzzers 2.5x faster (see BUILD_FLAGS in xtask/src/fuzz.rs). build.rs leaves
# them out of the kernel code too, whatever OSS-Fuzz's CFLAGS say (C_HOOKS_DROPPED there):
# the kernel code keeps its edges.
log "cargo fuzz build -O -a --no-trace-compares --sanitizer $CARGO_FUZZ_SANITIZER (SANITIZER=$SANITIZER)"
cargo fuzz build -O -a --no-trace-compares --sanitizer "$CARGO_FUZZ_SANITIZER"

BIN_DIR="${CARGO_TARGET_DIR:-$PROJECT/fuzz/target}/x86_64-unknown-linux-gnu/release"

# --- Install targets, seed corpora, dictionaries, options ------------------------------------
n=0
for src in fuzz/fuzz_targets/*.rs; do
    t=$(basename "$src" .rs)
    [ -x "$BIN_DIR/$t" ] || die "$BIN_DIR/$t was not built (is it a [[bin]] in fuzz/Cargo.toml?)"
    cp "$BIN_DIR/$t" "$OUT/$t"
    cp oss-fuzz/kvm-pgtable-diff.dict "$OUT/$t.dict"
    cp oss-fuzz/kvm-pgtable-diff.options "$OUT/$t.options"

    seeds="$WORK/seeds/$t"
    rm -rf "$seeds" "$OUT/${t}_seed_corpus.zip"
    mkdir -p "$seeds"
    if [ -d "fuzz/corpus/$t" ]; then
        find "fuzz/corpus/$t" -type f -print0 | while IFS= read -r -d '' f; do
            cp "$f" "$seeds/$(sha1sum < "$f" | cut -c1-40)"
        done
    fi
    count=$(find "$seeds" -type f | wc -l)
    if [ "$count" -gt 0 ]; then
        (cd "$seeds" && find . -type f -printf '%f\n' | sort | zip -q -X -@ "$OUT/${t}_seed_corpus.zip")
        log "$t: binary, ${t}_seed_corpus.zip ($count seeds), $t.dict, $t.options"
    else
        log "$t: binary, no seed corpus (fuzz/corpus/$t is empty), $t.dict, $t.options"
    fi
    n=$((n + 1))
done
log "$n targets in $OUT"
