#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-only
#
# OSS-Fuzz / ClusterFuzzLite build script for kvm-pgtable-diff (also run here, under an
# emulated OSS-Fuzz environment, by `cargo xtask oss-fuzz`).
#
# Input (set by OSS-Fuzz's `compile`, or by `cargo xtask oss-fuzz`):
#   SRC, OUT, WORK   source, output and scratch directories; the repository is $SRC/kvm-pgtable-diff
#   SANITIZER        address | coverage (| none, memory, ...)
#   CC, CFLAGS       the C side (the kernel's pgtable.c) is compiled with exactly these: build.rs
#                    uses $CC, the cc crate appends $CFLAGS, and build.rs adds
#                    -fsanitize=fuzzer-no-link / -fsanitize=address only when CFLAGS lack them.
#                    In coverage builds CFLAGS carry -fprofile-instr-generate -fcoverage-mapping.
#   RUSTFLAGS        --cfg fuzzing, -Cdebug-assertions, the sanitizer / coverage flags.
# Optional:
#   LINUX_SRC        a kernel tree for the C side (default: .cache/linux-source-6.12 if present,
#                    else $SRC/linux, which the Dockerfiles fetch at image build time)
#   LIBCLANG_PATH    directory of libclang.so for bindgen (searched when unset)
#   CARGO_TARGET_DIR cargo's target directory (default: fuzz/target)
#
# Output, per fuzz target T (one per fuzz/fuzz_targets/T.rs):
#   $OUT/T                   the libFuzzer binary
#   $OUT/T_seed_corpus.zip   fuzz/corpus/T/*, each file named by the sha1 of its content
#   $OUT/T.dict              oss-fuzz/kvm-pgtable-diff.dict (op tags, literal-mode values)
#   $OUT/T.options           oss-fuzz/kvm-pgtable-diff.options ([libfuzzer] max_len, timeout)

log() { echo "[build.sh] $*"; }

PROJECT="$SRC/kvm-pgtable-diff"
cd "$PROJECT"
WORK="${WORK:-$(mktemp -d)}"
SANITIZER="${SANITIZER:-address}"

# --- Kernel source (never fetched here: the image or the developer provides it) -------------
LOCK_FILES="arch/arm64/kvm/hyp/pgtable.c"
if [ -z "${LINUX_SRC:-}" ] && [ ! -f ".cache/linux-source-6.12/$LOCK_FILES" ]; then
    if [ -f "$SRC/linux/$LOCK_FILES" ]; then
        export LINUX_SRC="$SRC/linux"
    else
        echo "error: no kernel source: expected $PROJECT/.cache/linux-source-6.12 (cargo xtask kernel)," \
             "\$SRC/linux (fetched by the Dockerfile) or LINUX_SRC=<kernel tree>" >&2
        exit 1
    fi
fi
if [ -n "${LINUX_SRC:-}" ]; then
    log "kernel source: LINUX_SRC=$LINUX_SRC"
    # Say whether it is the source pinned in kernel.lock (a patched tree is allowed to differ).
    while read -r kw hash path; do
        [ "$kw" = "sha256" ] || continue
        got=$(sha256sum "$LINUX_SRC/$path" | cut -d' ' -f1)
        if [ "$got" = "$hash" ]; then
            log "  $path: matches kernel.lock"
        else
            log "  $path: differs from kernel.lock (sha256 $got)"
        fi
    done < kernel.lock
else
    log "kernel source: .cache/linux-source-6.12 (kernel.lock)"
fi

# --- libclang for bindgen -------------------------------------------------------------------
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
log "CC=${CC:-<unset>} CFLAGS=${CFLAGS:-}"
log "RUSTFLAGS=${RUSTFLAGS:-}"

# --- Build -----------------------------------------------------------------------------------
# cargo-fuzz's own sanitizer flag must agree with SANITIZER. With SANITIZER=coverage,
# base-builder-rust's `cargo` wrapper turns this command into a debug `cargo build --bins` with
# RUSTFLAGS' -Cinstrument-coverage and copies the binaries to .../x86_64-unknown-linux-gnu/release.
case "$SANITIZER" in
    address | memory | thread) CARGO_FUZZ_SANITIZER="$SANITIZER" ;;
    *) CARGO_FUZZ_SANITIZER=none ;;
esac
# --no-trace-compares: compare hooks stay in the C code (OSS-Fuzz's CFLAGS),
# not in the Rust code, whose compares mirror pgtable.c's; it makes the
# fuzzers 2.5x faster (see BUILD_FLAGS in xtask/src/fuzz.rs).
log "cargo fuzz build -O --no-trace-compares --sanitizer $CARGO_FUZZ_SANITIZER (SANITIZER=$SANITIZER)"
cargo fuzz build -O --no-trace-compares --sanitizer "$CARGO_FUZZ_SANITIZER"

BIN_DIR="${CARGO_TARGET_DIR:-$PROJECT/fuzz/target}/x86_64-unknown-linux-gnu/release"

# --- Install targets, seed corpora, dictionaries, options ------------------------------------
n=0
for src in fuzz/fuzz_targets/*.rs; do
    t=$(basename "$src" .rs)
    if [ ! -x "$BIN_DIR/$t" ]; then
        echo "error: $BIN_DIR/$t was not built (is it a [[bin]] in fuzz/Cargo.toml?)" >&2
        exit 1
    fi
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
