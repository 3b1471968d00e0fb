// Asynchronous global-to-shared copies (sm_80's cp.async): EMBER_CP_ASYNC(dst, i, src, j, full) and
// EMBER_CP_ASYNC_WAIT(). The source is read when the copy is issued, but the shared element is written only when
// the issuing thread waits, as late as the hardware may land it: a kernel that reads the tile before waiting sees
// the old contents (or, checked, "never written"), and a thread that exits with copies in flight is an error.
// `full` false copies nothing and fills the element with zeros (cp.async's src-size 0), without reading `src`.
// EMBER_CP_ASYNC_VEC(dst, i, src, j, bytes) copies a whole aligned vector of elements the same way.
#pragma once

namespace ember_emu {
namespace {

struct PendingCopy {
    void* to;  // the shared element
#if EMBER_EMU_CHECK
    SharedHeader* h;
    long long i;
#endif
    unsigned size;
    unsigned char bytes[16];
};

PendingCopy* push_copy(unsigned size) {
    Fiber* f = g_cur;
    if (size > sizeof(PendingCopy::bytes))
        fail_thread("cp.async of %u bytes (at most 16)", size);
    if (f->ncopies == f->copies_cap) {
        const unsigned cap = f->copies_cap ? 2 * f->copies_cap : 16;
        void* grown = realloc(f->copies, cap * sizeof(PendingCopy));
        if (!grown)
            fail_thread("cannot record %u pending cp.async copies", cap);
        f->copies = grown;
        f->copies_cap = cap;
    }
    PendingCopy* c = static_cast<PendingCopy*>(f->copies) + f->ncopies++;
    c->size = size;
    return c;
}

template <class T, class Src>
void read_source(PendingCopy* c, const Src& src, long long j, bool full) {
    const T v = full ? (T)src[j] : T();
    memcpy(c->bytes, &v, sizeof(T));
}

#if EMBER_EMU_CHECK
template <class T, class Src>
void cp_async(const SharedArray<T>& dst, long long i, const Src& src, long long j, bool full) {
    PendingCopy* c = push_copy(sizeof(T));
    read_source<T>(c, src, j, full);
    c->h = dst.h;
    c->i = dst.off + i;
    c->to = nullptr;
}
#else
template <class T, size_t N, class Src>
void cp_async(T (&dst)[N], long long i, const Src& src, long long j, bool full) {
    PendingCopy* c = push_copy(sizeof(T));
    read_source<T>(c, src, j, full);
    c->to = &dst[i];
}
#endif

// EMBER_CP_ASYNC_VEC: B bytes of consecutive elements (4, 8 or 16), both ends aligned to B as the hardware needs.
template <int B, class T, class Dst, class Src>
void cp_async_elements(Dst& dst, const void* to, long long i, const Src& src, long long j) {
    static_assert(B == 4 || B == 8 || B == 16, "cp.async copies 4, 8 or 16 bytes");
    static_assert(B % sizeof(T) == 0, "whole elements");
    if (((uintptr_t)address_of(src) + (uintptr_t)j * sizeof(T)) % B)
        fail_thread("cp.async of %d bytes from global memory at element %lld, not %d-byte aligned", B, j, B);
    if ((uintptr_t)to % B)
        fail_thread("cp.async of %d bytes to shared memory at element %lld, not %d-byte aligned", B, i, B);
    for (int e = 0; e < B / (int)sizeof(T); ++e)
        cp_async(dst, i + e, src, j + e, true);
}

#if EMBER_EMU_CHECK
template <int B, class T, class Src>
void cp_async_vec(const SharedArray<T>& dst, long long i, const Src& src, long long j) {
    cp_async_elements<B, T>(dst, static_cast<T*>(dst.h->data) + dst.off + i, i, src, j);
}
#else
template <int B, class T, size_t N, class Src>
void cp_async_vec(T (&dst)[N], long long i, const Src& src, long long j) {
    cp_async_elements<B, T>(dst, &dst[i], i, src, j);
}
#endif

void cp_async_wait_all() {
    Fiber* f = g_cur;
    PendingCopy* c = static_cast<PendingCopy*>(f->copies);
    for (unsigned k = 0; k < f->ncopies; ++k) {
#if EMBER_EMU_CHECK
        shared_check_write(c[k].h, c[k].i);
        c[k].to = static_cast<char*>(c[k].h->data) + (size_t)c[k].i * c[k].size;
#endif
        memcpy(c[k].to, c[k].bytes, c[k].size);
    }
    f->ncopies = 0;
}

}  // namespace
}  // namespace ember_emu

#define EMBER_CP_ASYNC(dst, i, src, j, full) (::ember_emu::cp_async((dst), (i), (src), (j), (full)))
#define EMBER_CP_ASYNC_VEC(dst, i, src, j, bytes) (::ember_emu::cp_async_vec<bytes>((dst), (i), (src), (j)))
#define EMBER_CP_ASYNC_WAIT() (::ember_emu::cp_async_wait_all())
