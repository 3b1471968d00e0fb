// nvcuda::wmma (m16n16k16) with reference semantics: every lane's fragment holds the whole tile (row-major in x[]).
// load/mma/store are warp collectives over a full warp: the last lane to arrive does the work once (memory is
// accessed as lane 0, so the shared-race checker sees one accessor) and copies the tile into every lane's fragment.
#pragma once

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the CUDA emulator supports WMMA m16n16k16 only");
    enum { num_elements = 256 };
    T x[256];
};

}  // namespace wmma
}  // namespace nvcuda

namespace ember_emu {
namespace {

template <class L> struct IsColMajor { enum { value = 0 }; };
template <> struct IsColMajor<nvcuda::wmma::col_major> { enum { value = 1 }; };

struct WmmaRequest {
    void* tile;          // the lane's fragment storage
    const void* memory;  // the lane's pointer (load/store)
    unsigned ldm;
};

// Runs `work(first_lane, requests)` once for the warp, after every lane arrived with its request.
template <class Work>
void wmma_collective(unsigned char op, WmmaRequest* req, Work&& work) {
    Fiber* f = g_cur;
    if (g_warp_exist[f->warp] != 0xffffffffu)
        fail_thread("%s needs a full warp of 32 threads (the block has %u threads)", k_op_names[op], g_nthreads);
    f->payload = req;
    warp_collective(op, 0xffffffffu, [&](Fiber* base, unsigned) {
        for (unsigned j = 1; j < 32; ++j) {
            const WmmaRequest* r = static_cast<const WmmaRequest*>(base[j].payload);
            const WmmaRequest* r0 = static_cast<const WmmaRequest*>(base[0].payload);
            if (r->memory != r0->memory || r->ldm != r0->ldm)
                fail_thread("%s: lanes of the warp passed different pointers or ldm (lane 0: ldm %u, lane %u: "
                            "ldm %u)", k_op_names[op], r0->ldm, j, r->ldm);
        }
        Fiber* self = g_cur;
        g_cur = base;  // memory is touched on behalf of lane 0
        work(base);
        g_cur = self;
    });
}

template <class T, class P>
void check_wmma_pointer(unsigned char op, const P& p, unsigned ldm) {
    const unsigned multiple = 16 / sizeof(T);
    if (ldm == 0 || ldm % multiple)
        fail_thread("%s with ldm %u (must be a positive multiple of %u for %zu-byte elements)", k_op_names[op], ldm,
                    multiple, sizeof(T));
    if (EMBER_EMU_CHECK && byte_offset(p) % 32)
        fail_thread("%s with a pointer that is not 32-byte aligned (offset %zu bytes from its buffer)",
                    k_op_names[op], byte_offset(p));
}

// tile[r*16 + c] <-> p[col ? c*ldm + r : r*ldm + c]
template <class T, class P>
void wmma_load(T* tile, P&& p, unsigned ldm, bool col) {
    typedef typename RemoveConst<T>::type V;
    check_wmma_pointer<V>(OP_WMMA_LOAD, p, ldm);
    WmmaRequest req{tile, address_of(p), ldm};
    wmma_collective(OP_WMMA_LOAD, &req, [&](Fiber* base) {
        for (unsigned r = 0; r < 16; ++r)
            for (unsigned c = 0; c < 16; ++c)
                tile[r * 16 + c] = (V)p[col ? c * (long long)ldm + r : r * (long long)ldm + c];
        for (unsigned j = 0; j < 32; ++j) {
            T* other = static_cast<T*>(static_cast<WmmaRequest*>(base[j].payload)->tile);
            if (other != tile)
                memcpy(other, tile, 256 * sizeof(T));
        }
    });
}

template <class T, class P>
void wmma_store(P&& p, const T* tile, unsigned ldm, bool col) {
    check_wmma_pointer<T>(OP_WMMA_STORE, p, ldm);
    WmmaRequest req{const_cast<T*>(tile), address_of(p), ldm};
    wmma_collective(OP_WMMA_STORE, &req, [&](Fiber*) {
        for (unsigned r = 0; r < 16; ++r)
            for (unsigned c = 0; c < 16; ++c)
                p[col ? c * (long long)ldm + r : r * (long long)ldm + c] = tile[r * 16 + c];
    });
}

}  // namespace
}  // namespace ember_emu

namespace nvcuda {
namespace wmma {

template <class T, class V, class Use, class Layout>
static inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, const V& v) {
    const T t = (T)v;
    for (int i = 0; i < 256; ++i)
        f.x[i] = t;
}

template <class T, class Layout, class P>
static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, Layout>& f, P&& p, unsigned ldm) {
    ember_emu::wmma_load(f.x, p, ldm, ember_emu::IsColMajor<Layout>::value);
}

template <class T, class Layout, class P>
static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, Layout>& f, P&& p, unsigned ldm) {
    ember_emu::wmma_load(f.x, p, ldm, ember_emu::IsColMajor<Layout>::value);
}

template <class T, class P>
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, P&& p, unsigned ldm, layout_t layout) {
    ember_emu::wmma_load(f.x, p, ldm, layout == mem_col_major);
}

template <class T, class P>
static inline void store_matrix_sync(P&& p, const fragment<accumulator, 16, 16, 16, T>& f, unsigned ldm,
                                     layout_t layout) {
    ember_emu::wmma_store(p, f.x, ldm, layout == mem_col_major);
}

// d = a * b + c with float accumulation (products of halves are exact in float).
template <class Td, class Ta, class La, class Tb, class Lb, class Tc>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, Td>& d, const fragment<matrix_a, 16, 16, 16, Ta, La>& a,
                            const fragment<matrix_b, 16, 16, 16, Tb, Lb>& b,
                            const fragment<accumulator, 16, 16, 16, Tc>& c) {
    ember_emu::WmmaRequest req{d.x, nullptr, 0};
    ember_emu::wmma_collective(ember_emu::OP_WMMA_MMA, &req, [&](ember_emu::Fiber* base) {
        float out[256];
        for (int i = 0; i < 16; ++i)
            for (int j = 0; j < 16; ++j) {
                float acc = (float)c.x[i * 16 + j];
                for (int k = 0; k < 16; ++k)
                    acc += (float)a.x[i * 16 + k] * (float)b.x[k * 16 + j];
                out[i * 16 + j] = acc;
            }
        for (unsigned l = 0; l < 32; ++l) {
            Td* tile = static_cast<Td*>(static_cast<ember_emu::WmmaRequest*>(base[l].payload)->tile);
            for (int i = 0; i < 256; ++i)
                tile[i] = (Td)out[i];
        }
    });
}

}  // namespace wmma
}  // namespace nvcuda
