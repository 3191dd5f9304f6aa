#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Cost breakdown of fuzz-target profiles, per component (docs/PERFORMANCE.md, "Profile").

Input: one `perf script -F ip,sym --no-inline` dump per target, recorded with a DWARF call
graph (`perf record --call-graph dwarf`), so each sample's frames run leaf first. Usage:

    bench/profile-breakdown.py hyp=hyp.txt stage2=stage2.txt ...

Each sample goes to one component, decided by its frames: a sanitizer runtime leaf is ASan, a
libFuzzer compare hook (`__sanitizer_cov_trace_*`, only the C code has them) near the leaf is
"C cmp hooks"; otherwise the first frame, leaf to root, that belongs to a component owns the
sample, so the crate's shared helpers (tree walks, event equality, trace vectors, libc) count
for whoever called them. ASan's inline shadow checks are part of the code they check; the
ASan column is its runtime (allocator, interceptors, memset/memcpy checks). The last column,
teardown, is a phase, not a component: the share of samples under either side's `destroy`.
Prints a Markdown table of percentages.
"""
import sys, collections
LIBC = ('malloc','free','cfree','calloc','realloc','memcpy','memset','memmove','memcmp','bcmp',
        '__mem','_int_','__libc','__GI_','_start','main','strlen','__strlen','posix_memalign','__posix_memalign',
        'aligned_alloc','[unknown]','_dl_','__tls_get_addr','sysmalloc','tcache','unlink_chunk','__munmap',
        '__mmap','madvise','__madvise','brk','__brk','sbrk','__sbrk','operator new','operator delete','exit','__run_exit')
COLS = ['kernel C', 'C cmp hooks', 'rust-pgtable', 'recording C', 'recording Rust', 'arena/mm_ops',
        'C harness', 'comparison', 'owner inv.', 'arch oracle', 'decode', 'driver', 'libFuzzer', 'ASan', 'other']
def comp(user):
    leaf = user[0]
    if leaf.startswith(('__asan','__interceptor','__lsan','__ubsan','asan_','__sanitizer_internal')) \
       or '__asan::' in leaf or '__sanitizer::' in leaf or '__lsan::' in leaf:
        return 'ASan'
    if any(x.startswith(('__sanitizer_cov', 'fuzzer::TracePC::Handle')) for x in user[:3]):
        return 'C cmp hooks'
    # Specific owners first, leaf to root; the crate's shared helpers (tree walks, event
    # equality, trace vectors) belong to whichever of them called them.
    for s in user:
        if 'oracle::diff' in s: return 'comparison'
        if 'oracle::contract' in s: return 'owner inv.'
        if 'oracle::arch' in s: return 'arch oracle'
        if s.startswith('rust_pgtable::') or '<rust_pgtable::' in s: return 'rust-pgtable'
        if s.startswith('kpd_ev_') or 'callbacks::kpd_ev' in s: return 'recording C'
        if s.startswith('kpd_mm_') or 'kvm_pgtable_diff::arena' in s or 'c_side::callbacks' in s: return 'arena/mm_ops'
        if 'kvm_pgtable_diff::rust_side' in s: return 'recording Rust'
        if '::' not in s and not s.startswith(LIBC + ('LLVMFuzzer', 'rust_fuzzer', '__rust', '__libfuzzer', 'ensureFuzzer')) and not s.startswith(('core','alloc','std','<')):
            return 'kernel C'
    # Then the harness (the C side's wrapper, the op decoder, the executor), libFuzzer last:
    # its frames are at the root of every sample.
    for s in user:
        if 'kvm_pgtable_diff::c_side' in s: return 'C harness'
        if 'opstream' in s: return 'decode'
        if 'kvm_pgtable_diff::' in s: return 'driver'
    for s in user:
        if s.startswith('fuzzer::') or 'fuzzer::' in s[:40]: return 'libFuzzer'
    return 'other'
def samples(lines):
    cur=[]
    for line in lines:
        line=line.rstrip('\n')
        if not line.strip():
            if cur: yield cur; cur=[]
            continue
        p=line.strip().split(None,1)
        cur.append((p[0], p[1] if len(p)>1 else '[unknown]'))
    if cur: yield cur
rows=[]
for arg in sys.argv[1:]:
    name,path=arg.split('=',1)
    c=collections.Counter(); n=0; td=0
    for s in samples(open(path)):
        user=[x for ip,x in s if not ip.startswith('ffffffff')]
        if not user: user=['[kernel]']
        c[comp(user)]+=1; n+=1
        if any('as kvm_pgtable_diff::side::Side>::destroy' in x for x in user): td+=1
    rows.append((name,n,c,td))
print('| target | samples | ' + ' | '.join(COLS) + ' | teardown (phase) |')
print('|---|---:|' + '---:|'*(len(COLS)+1))
for name,n,c,td in rows:
    print(f'| {name} | {n} | ' + ' | '.join(f'{100*c[k]/n:.1f}' for k in COLS) + f' | {100*td/n:.1f} |')
