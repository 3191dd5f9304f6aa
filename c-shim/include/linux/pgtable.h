/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff stub: page-table geometry lives in kpd/arch.h. */
#include <kpd/arch.h>
