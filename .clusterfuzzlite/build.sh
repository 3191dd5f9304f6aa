#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-only
# ClusterFuzzLite build: exactly the OSS-Fuzz build (oss-fuzz/build.sh documents it).
exec bash -euo pipefail "$SRC/kvm-pgtable-diff/oss-fuzz/build.sh" "$@"
