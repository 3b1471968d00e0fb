// Global and shared memory. EMBER_GLOBAL(T) is a pointer that knows its argument's name and element count;
// EMBER_SHARED(T, name, n) is a per-block array in an arena reset for every block. With EMBER_EMU_CHECK, element
// access goes through proxies that check bounds and, for shared memory, track per element the last writer and the
// readers of the current barrier epoch (never-written reads, missing __syncthreads, write-after-read races).
// Without checking, global pointers and shared arrays are plain memory.
#pragma once

namespace ember_emu {
namespace {

template <class T> struct RemoveConst { typedef T type; };
template <class T> struct RemoveConst<const T> { typedef T type; };
template <size_t N> struct UnsignedBits;
template <> struct UnsignedBits<4> { typedef uint32_t type; };
template <> struct UnsignedBits<8> { typedef uint64_t type; };

// Arena: per slot a header, the data (32-byte aligned, as WMMA requires) and, when checking, one SharedMeta per
// element. Static shared memory is limited to 48 KiB per block, as in CUDA.
constexpr size_t kSharedLimit = 48 * 1024;

// Per element: the last write and the reads of the current barrier epoch. Within one warp, a __syncwarp() after
// the access (the warp's generation moved on) orders it as a barrier would.
struct SharedMeta {
    uint32_t w_epoch, r_epoch;  // epoch of the last write / of the reads recorded
    uint32_t w_gen, r_gen;      // the warp generation at the write / at the latest read
    uint16_t writer, reader;    // thread ids (reader: the first one, | kSeveral, | kWarps)
};
constexpr uint16_t kThreadBits = 0x3ffu;
constexpr uint16_t kSeveral = 0x8000u;  // more than one thread read the element in this epoch
constexpr uint16_t kWarps = 0x4000u;    // ... and they belong to different warps

struct SharedHeader {
    void* data;
    SharedMeta* meta;
    long long n;
    const char* name;
};

constexpr size_t kArenaBytes = kMaxSharedSlots * (sizeof(SharedHeader) + 64) + kSharedLimit +
                               (EMBER_EMU_CHECK ? kSharedLimit * sizeof(SharedMeta) : 0);

inline size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

// The k-th EMBER_SHARED declaration a thread passes: the first thread of the block to reach it sets it up.
SharedHeader* shared_slot(const char* name, long long n, size_t elem_size, int id) {
    Fiber* f = g_cur;
    const unsigned k = f->shared_decls++;
    if (k < g_block_slots) {
        if (g_slots[k].id != id)
            fail_thread("threads reached the EMBER_SHARED declarations of the block in different orders ('%s'); "
                        "declare shared arrays unconditionally at the top of the kernel", name);
        return reinterpret_cast<SharedHeader*>(g_arena + g_slots[k].begin);
    }
    if (k >= kMaxSharedSlots)
        fail_thread("more than %u shared arrays", kMaxSharedSlots);
    if (n <= 0 || (unsigned long long)n > kSharedLimit)
        fail_thread("shared array '%s' has %lld elements (at most %zu bytes of static shared memory per block)",
                    name, n, kSharedLimit);
    const size_t bytes = (size_t)n * elem_size;
    if (bytes > kSharedLimit || g_block_shared_bytes + bytes > kSharedLimit)
        fail_thread("shared array '%s' (%zu bytes) takes the block's static shared memory over the %zu-byte limit",
                    name, bytes, kSharedLimit);
    if (!g_arena) {
        g_arena = static_cast<char*>(malloc(kArenaBytes));
        if (!g_arena)
            fail_thread("cannot allocate the shared-memory arena");
    }
    SharedSlot& s = g_slots[k];
    if (!(k < g_launch_slots && s.id == id && s.n == n && s.elem_size == elem_size)) {
        // First block of the launch to lay out this slot: fresh (zeroed) metadata means "never written".
        s.id = id;
        s.n = n;
        s.elem_size = elem_size;
        s.begin = k ? g_slots[k - 1].end : 0;
        const size_t data = align_up(s.begin + sizeof(SharedHeader), 32);
        const size_t meta = align_up(data + bytes, 8);
        s.end = EMBER_EMU_CHECK ? meta + (size_t)n * sizeof(SharedMeta) : meta;
        SharedHeader* h = reinterpret_cast<SharedHeader*>(g_arena + s.begin);
        h->data = g_arena + data;
        h->meta = EMBER_EMU_CHECK ? reinterpret_cast<SharedMeta*>(g_arena + meta) : nullptr;
        h->n = n;
        h->name = name;
        if (EMBER_EMU_CHECK)
            memset(h->meta, 0, (size_t)n * sizeof(SharedMeta));
        g_launch_slots = k + 1;
    }
    g_block_shared_bytes += bytes;
    g_block_slots = k + 1;
    return reinterpret_cast<SharedHeader*>(g_arena + s.begin);
}

#if EMBER_EMU_CHECK

inline bool warp_synced_since(unsigned other, uint32_t gen, unsigned me) {
    return (other >> 5) == (me >> 5) && g_warp_gen[me >> 5] != gen;
}

void shared_check_read(SharedHeader* a, long long i) {
    const unsigned me = g_cur->tid;
    if ((unsigned long long)i >= (unsigned long long)a->n)
        fail_thread("out-of-bounds read of shared '%s' at index %lld (size %lld)", a->name, i, a->n);
    SharedMeta& m = a->meta[i];
    if (m.w_epoch < g_block_epoch0)
        fail_thread("read of shared '%s' element %lld, which no thread of this block has written", a->name, i);
    if (m.w_epoch == g_epoch && m.writer != me && !warp_synced_since(m.writer, m.w_gen, me))
        fail_block("shared '%s' element %lld read by thread %s was written by thread %s with no __syncthreads() in "
                   "between", a->name, i, thread_name(me).s, thread_name(m.writer).s);
    if (m.r_epoch != g_epoch) {
        m.r_epoch = g_epoch;
        m.reader = (uint16_t)me;
    } else if ((m.reader & kThreadBits) != me) {
        m.reader |= kSeveral;  // the first reader stays: it is the one an error names
        if (((m.reader & kThreadBits) >> 5) != (me >> 5))
            m.reader |= kWarps;
    }
    m.r_gen = g_warp_gen[me >> 5];
}

void shared_check_write(SharedHeader* a, long long i) {
    const unsigned me = g_cur->tid;
    if ((unsigned long long)i >= (unsigned long long)a->n)
        fail_thread("out-of-bounds write of shared '%s' at index %lld (size %lld)", a->name, i, a->n);
    SharedMeta& m = a->meta[i];
    if (m.r_epoch == g_epoch && m.reader != me) {
        const unsigned reader = m.reader & kThreadBits;
        if ((m.reader & kWarps) || !warp_synced_since(reader, m.r_gen, me)) {
            if (reader == me)
                fail_block("shared '%s' element %lld written by thread %s was read by other threads with no "
                           "__syncthreads() in between (write-after-read race)", a->name, i, thread_name(me).s);
            fail_block("shared '%s' element %lld written by thread %s was read by thread %s with no __syncthreads() "
                       "in between (write-after-read race)", a->name, i, thread_name(me).s, thread_name(reader).s);
        }
    }
    m.w_epoch = g_epoch;
    m.writer = (uint16_t)me;
    m.w_gen = g_warp_gen[me >> 5];
}

// Atomics read and write the element; they never race with each other.
void shared_check_atomic(SharedHeader* a, long long i) {
    const unsigned me = g_cur->tid;
    if ((unsigned long long)i >= (unsigned long long)a->n)
        fail_thread("out-of-bounds atomic access of shared '%s' at index %lld (size %lld)", a->name, i, a->n);
    SharedMeta& m = a->meta[i];
    if (m.w_epoch < g_block_epoch0)
        fail_thread("atomic on shared '%s' element %lld, which no thread of this block has written", a->name, i);
    m.w_epoch = g_epoch;
    m.writer = (uint16_t)me;
    m.w_gen = g_warp_gen[me >> 5];
}

// An element of a checked array (shared or global): reads, writes and compound assignments are checked.
// Access is the array's check policy: read(i), write(i, v), address(i) (for atomics).
template <class T, class Access>
struct ElementRef {
    Access a;
    long long i;
    typedef T value_type;
    operator T() const { return a.read(i); }
    template <class U> explicit operator U() const { return (U)a.read(i); }
    ElementRef& operator=(const T& v) {
        a.write(i, v);
        return *this;
    }
    ElementRef& operator=(const ElementRef& o) { return *this = (T)o; }
    template <class U, class A2> ElementRef& operator=(const ElementRef<U, A2>& o) { return *this = (T)(U)o; }
    template <class U> ElementRef& operator+=(const U& v) { T c = a.read(i); c += v; return *this = c; }
    template <class U> ElementRef& operator-=(const U& v) { T c = a.read(i); c -= v; return *this = c; }
    template <class U> ElementRef& operator*=(const U& v) { T c = a.read(i); c *= v; return *this = c; }
    template <class U> ElementRef& operator/=(const U& v) { T c = a.read(i); c /= v; return *this = c; }
    template <class U> ElementRef& operator%=(const U& v) { T c = a.read(i); c %= v; return *this = c; }
    template <class U> ElementRef& operator&=(const U& v) { T c = a.read(i); c &= v; return *this = c; }
    template <class U> ElementRef& operator|=(const U& v) { T c = a.read(i); c |= v; return *this = c; }
    template <class U> ElementRef& operator^=(const U& v) { T c = a.read(i); c ^= v; return *this = c; }
    template <class U> ElementRef& operator<<=(const U& v) { T c = a.read(i); c <<= v; return *this = c; }
    template <class U> ElementRef& operator>>=(const U& v) { T c = a.read(i); c >>= v; return *this = c; }
    ElementRef& operator++() { T c = a.read(i); ++c; return *this = c; }
    ElementRef& operator--() { T c = a.read(i); --c; return *this = c; }
    T operator++(int) { T c = a.read(i); T r = c; ++c; *this = c; return r; }
    T operator--(int) { T c = a.read(i); T r = c; --c; *this = c; return r; }
    T* operator&() const { return a.address(i); }  // for atomicAdd(&x[i], v)
};

template <class T>
struct SharedAccess {
    SharedHeader* h;
    T read(long long i) const {
        shared_check_read(h, i);
        return static_cast<T*>(h->data)[i];
    }
    void write(long long i, const T& v) const {
        shared_check_write(h, i);
        static_cast<T*>(h->data)[i] = v;
    }
    T* address(long long i) const {
        shared_check_atomic(h, i);
        return static_cast<T*>(h->data) + i;
    }
};

// A shared array (or an offset into one, from `name + off`) as the kernel sees it.
template <class T>
struct SharedArray {
    SharedHeader* h;
    long long off;
    ElementRef<T, SharedAccess<T>> operator[](long long i) const { return {SharedAccess<T>{h}, off + i}; }
    SharedArray operator+(long long k) const { return {h, off + k}; }
    SharedArray operator-(long long k) const { return {h, off - k}; }
};

template <class T>
SharedArray<T> shared_decl(const char* name, long long n, int id) {
    return SharedArray<T>{shared_slot(name, n, sizeof(T), id), 0};
}

template <class T>
struct GlobalAccess {
    T* base;
    long long n;
    const char* name;
    long long check(long long i, const char* what) const {
        if ((unsigned long long)i >= (unsigned long long)n)
            fail_thread("out-of-bounds %s of global '%s' at index %lld (size %lld)", what, name, i, n);
        return i;
    }
    T read(long long i) const { return base[check(i, "read")]; }
    void write(long long i, const T& v) const { base[check(i, "write")] = v; }
    T* address(long long i) const { return base + check(i, "atomic access"); }
};

// Element access of a global pointer: a checked reference, or a checked value for const element types.
template <class T>
struct GlobalElement {
    typedef ElementRef<T, GlobalAccess<T>> type;
    static type get(T* base, long long n, const char* name, long long i) { return {GlobalAccess<T>{base, n, name}, i}; }
};
template <class T>
struct GlobalElement<const T> {
    typedef T type;
    static T get(const T* base, long long n, const char* name, long long i) {
        if ((unsigned long long)i >= (unsigned long long)n)
            fail_thread("out-of-bounds read of global '%s' at index %lld (size %lld)", name, i, n);
        return base[i];
    }
};

// EMBER_GLOBAL(T): the kernel argument `name`, `n` elements from `base`; `p + off` keeps the bounds.
template <class T>
struct gptr {
    T* base;
    long long n;
    long long off;
    const char* name;
    typename GlobalElement<T>::type operator[](long long i) const {
        return GlobalElement<T>::get(base, n, name, off + i);
    }
    gptr operator+(long long k) const { return {base, n, off + k, name}; }
    gptr operator-(long long k) const { return {base, n, off - k, name}; }
    operator gptr<const T>() const { return {base, n, off, name}; }
};

template <class T>
gptr<T> make_gptr(unsigned long long addr, unsigned long long nbytes, const char* name) {
    return gptr<T>{reinterpret_cast<T*>(addr), (long long)(nbytes / sizeof(T)), 0, name};
}

// Byte offset of a pointer-like from its buffer's start (alignment rules are relative to the allocation).
template <class T> size_t byte_offset(const gptr<T>& p) { return (size_t)p.off * sizeof(T); }
template <class T> size_t byte_offset(const SharedArray<T>& p) { return (size_t)p.off * sizeof(T); }
template <class T> const void* address_of(const gptr<T>& p) { return p.base + p.off; }
template <class T> const void* address_of(const SharedArray<T>& p) { return static_cast<T*>(p.h->data) + p.off; }

#else  // !EMBER_EMU_CHECK

template <class T>
struct gptr {
    T* p;
    T& operator[](long long i) const { return p[i]; }
    gptr operator+(long long k) const { return {p + k}; }
    gptr operator-(long long k) const { return {p - k}; }
    operator gptr<const T>() const { return {p}; }
};

template <class T>
gptr<T> make_gptr(unsigned long long addr, unsigned long long, const char*) {
    return gptr<T>{reinterpret_cast<T*>(addr)};
}

template <class T> const void* address_of(const gptr<T>& p) { return p.p; }

#endif

template <class P> const void* address_of(const P& p) { return &p[0]; }
template <class P> size_t byte_offset(const P& p) { return (size_t)(uintptr_t)address_of(p); }

// EMBER_LOAD4/EMBER_STORE4: four floats at an index of the buffer that is a multiple of 4 (16-byte aligned).
template <class P>
void check_float4(const P& p, long long i, const char* what) {
    const long long at = (long long)(byte_offset(p) / sizeof(float)) + i;
    if (EMBER_EMU_CHECK && (at & 3))
        fail_thread("%s at index %lld, which is not a multiple of 4", what, at);
}

template <class P>
float4 load4(const P& p, long long i) {
    check_float4(p, i, "EMBER_LOAD4");
    float4 r;
    r.x = p[i];
    r.y = p[i + 1];
    r.z = p[i + 2];
    r.w = p[i + 3];
    return r;
}

template <class P>
void store4(P&& p, long long i, const float4& v) {
    check_float4(p, i, "EMBER_STORE4");
    p[i] = v.x;
    p[i + 1] = v.y;
    p[i + 2] = v.z;
    p[i + 3] = v.w;
}

// Atomic read-modify-write of a T through its bit pattern (float/double, min/max).
template <class T, class F>
T atomic_update(T* a, F f) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4- or 8-byte values");
    typedef typename RemoveConst<T>::type V;
    typedef typename UnsignedBits<sizeof(T)>::type Bits;
    Bits* u = reinterpret_cast<Bits*>(a);
    Bits old = __atomic_load_n(u, __ATOMIC_RELAXED);
    for (;;) {
        V cur;
        memcpy(&cur, &old, sizeof(V));
        const V next = f(cur);
        Bits nb;
        memcpy(&nb, &next, sizeof(V));
        if (__atomic_compare_exchange_n(u, &old, nb, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return cur;
    }
}

}  // namespace
}  // namespace ember_emu

#if EMBER_EMU_CHECK
#define EMBER_GLOBAL(T) ::ember_emu::gptr<T>
#define EMBER_SHARED(T, name, n) \
    const ::ember_emu::SharedArray<T> name = ::ember_emu::shared_decl<T>(#name, (long long)(n), __COUNTER__)
#else
#define EMBER_GLOBAL(T) ::ember_emu::gptr<T>
#define EMBER_SHARED(T, name, n)                                                                      \
    T(&name)[n] = *reinterpret_cast<T(*)[n]>(                                                       \
        ::ember_emu::shared_slot(#name, (long long)(n), sizeof(T), __COUNTER__)->data)
#endif

static inline int atomicAdd(int* a, int v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned* a, unsigned v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }
static inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
    return __atomic_fetch_add(a, v, __ATOMIC_RELAXED);
}
static inline float atomicAdd(float* a, float v) {
    return ember_emu::atomic_update(a, [v](float c) { return c + v; });
}
static inline double atomicAdd(double* a, double v) {
    return ember_emu::atomic_update(a, [v](double c) { return c + v; });
}
static inline int atomicMax(int* a, int v) { return ember_emu::atomic_update(a, [v](int c) { return c > v ? c : v; }); }
static inline unsigned atomicMax(unsigned* a, unsigned v) {
    return ember_emu::atomic_update(a, [v](unsigned c) { return c > v ? c : v; });
}
static inline int atomicMin(int* a, int v) { return ember_emu::atomic_update(a, [v](int c) { return c < v ? c : v; }); }
static inline unsigned atomicMin(unsigned* a, unsigned v) {
    return ember_emu::atomic_update(a, [v](unsigned c) { return c < v ? c : v; });
}
template <class T>
static inline T ember_emu_cas(T* a, T compare, T val) {
    __atomic_compare_exchange_n(a, &compare, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;  // the old value whether or not it was swapped
}
static inline int atomicCAS(int* a, int c, int v) { return ember_emu_cas(a, c, v); }
static inline unsigned atomicCAS(unsigned* a, unsigned c, unsigned v) { return ember_emu_cas(a, c, v); }
static inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c, unsigned long long v) {
    return ember_emu_cas(a, c, v);
}
static inline int atomicExch(int* a, int v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
static inline unsigned atomicExch(unsigned* a, unsigned v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }
static inline unsigned long long atomicExch(unsigned long long* a, unsigned long long v) {
    return __atomic_exchange_n(a, v, __ATOMIC_RELAXED);
}
static inline float atomicExch(float* a, float v) { return ember_emu::atomic_update(a, [v](float) { return v; }); }
