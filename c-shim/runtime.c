/* SPDX-License-Identifier: GPL-2.0-only */
/* kvm-pgtable-diff: per-thread run-time settings and event buffer shared by
 * all C builds. */
#include <kpd/runtime.h>

_Thread_local struct kpd_runtime kpd_rt = { .acc_stop = ~0ULL };
_Thread_local struct kpd_ev_buffer kpd_evbuf;

struct kpd_runtime *kpd_runtime_get(void)
{
	return &kpd_rt;
}

struct kpd_ev_buffer *kpd_evbuf_get(void)
{
	return &kpd_evbuf;
}

__attribute__((noinline, no_sanitize("coverage"))) void
kpd_ev_put(enum kpd_ev_kind kind, s32 arg, u64 a, u64 b, u64 c)
{
	struct kpd_ev_buffer *buf = &kpd_evbuf;
	struct kpd_ev *e;

	if (__builtin_expect(buf->len == KPD_EV_CAP, 0))
		kpd_ev_flush();
	e = &buf->ev[buf->len++];
	e->a = a;
	e->b = b;
	e->c = c;
	e->kind = kind;
	e->arg = arg;
}
