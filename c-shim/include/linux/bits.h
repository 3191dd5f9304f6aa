/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff stub: everything lives in kpd/base.h. */
#include <kpd/base.h>
