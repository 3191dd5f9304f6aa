/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff stub: the KVM and arm64 definitions pgtable.c relies on. */
#include <kpd/base.h>
#include <kpd/arch.h>
#include <kpd/recorder.h>
#include <kpd/kvm.h>
