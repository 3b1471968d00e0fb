// Warp collectives: __syncwarp, shuffles and votes. Each lane deposits its contribution and waits; the lane that
// arrives last (when every participating lane - in the mask and existing - waits in the same operation with the
// same mask) computes every lane's result, releases them and goes on. Lanes beyond the block's thread count do
// not exist; a shuffle whose source lane does not take part returns the caller's own value.
#pragma once

namespace ember_emu {
namespace {

inline bool waits_in(const Fiber* g, unsigned char op, unsigned mask) {
    return g->state == F_WARP && g->op == op && g->mask == mask;
}

// Enters a warp collective; `complete(base, m)` runs once, in the last lane to arrive, with all lanes waiting.
template <class Complete>
void warp_collective(unsigned char op, unsigned mask, Complete&& complete) {
    Fiber* f = g_cur;
    if (!((mask >> f->lane) & 1u))
        fail_thread("%s with mask 0x%08x, which does not include the calling lane %u", k_op_names[op], mask, f->lane);
    const unsigned m = mask & g_warp_exist[f->warp];
    Fiber* base = g_fibers + f->warp * 32;
    f->op = op;
    f->mask = mask;
    f->state = F_WARP;
    // Lanes usually arrive in increasing order, so look above the caller first: a missing lane ends the scan early.
    bool all = true;
    for (unsigned j = f->lane + 1; j < 32 && all; ++j)
        all = !((m >> j) & 1u) || waits_in(base + j, op, mask);
    for (unsigned j = 0; j < f->lane && all; ++j)
        all = !((m >> j) & 1u) || waits_in(base + j, op, mask);
    if (!all) {
        yield_to_scheduler();
        return;
    }
    complete(base, m);
    for (unsigned j = 0; j < 32; ++j)
        if ((m >> j) & 1u)
            base[j].state = F_READY;
}

inline int shfl_source(unsigned char op, unsigned lane, unsigned arg, unsigned width) {
    const unsigned sub = lane & (width - 1u);
    switch (op) {
    case OP_SHFL: return (int)((lane & ~(width - 1u)) | (arg & (width - 1u)));
    case OP_SHFL_UP: return sub >= arg ? (int)(lane - arg) : -1;
    case OP_SHFL_DOWN: return (unsigned long long)sub + arg < width ? (int)(lane + arg) : -1;
    default: {  // xor: lanes of later width-groups (or beyond the warp) give the caller's own value
        const unsigned src = lane ^ arg;
        return src < 32u && src < (lane / width + 1u) * width ? (int)src : -1;
    }
    }
}

template <class T>
T shuffle(unsigned char op, unsigned mask, T var, unsigned arg, int width) {
    static_assert(sizeof(T) <= 8, "shuffled values are at most 8 bytes");
    if (width <= 0 || width > 32 || (width & (width - 1)))
        fail_thread("%s with width %d (must be a power of two in [1, 32])", k_op_names[op], width);
    Fiber* f = g_cur;
    f->value = 0;
    memcpy(&f->value, &var, sizeof(T));
    f->arg = arg;
    f->width = width;
    warp_collective(op, mask, [](Fiber* base, unsigned m) {
        for (unsigned j = 0; j < 32; ++j) {
            if (!((m >> j) & 1u))
                continue;
            Fiber* g = base + j;
            const int src = shfl_source(g->op, j, g->arg, (unsigned)g->width);
            g->result = src >= 0 && ((m >> src) & 1u) ? base[src].value : g->value;
        }
    });
    T r;
    memcpy(&r, &f->result, sizeof(T));
    return r;
}

inline unsigned vote(unsigned char op, unsigned mask, int pred) {
    Fiber* f = g_cur;
    f->value = pred != 0;
    warp_collective(op, mask, [](Fiber* base, unsigned m) {
        unsigned bits = 0;
        for (unsigned j = 0; j < 32; ++j)
            if (((m >> j) & 1u) && base[j].value)
                bits |= 1u << j;
        const unsigned char kind = base[__builtin_ctz(m)].op;
        const uint64_t r = kind == OP_BALLOT ? bits : kind == OP_ANY ? bits != 0 : bits == m;
        for (unsigned j = 0; j < 32; ++j)
            if ((m >> j) & 1u)
                base[j].result = r;
    });
    return (unsigned)f->result;
}

}  // namespace
}  // namespace ember_emu

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    ember_emu::warp_collective(ember_emu::OP_SYNCWARP, mask,
                               [](ember_emu::Fiber* base, unsigned) { ++ember_emu::g_warp_gen[base->warp]; });
}

static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return ember_emu::vote(ember_emu::OP_BALLOT, mask, pred);
}
static inline int __any_sync(unsigned mask, int pred) { return (int)ember_emu::vote(ember_emu::OP_ANY, mask, pred); }
static inline int __all_sync(unsigned mask, int pred) { return (int)ember_emu::vote(ember_emu::OP_ALL, mask, pred); }

#define EMBER_EMU_SHUFFLES(T)                                                                         \
    static inline T __shfl_sync(unsigned mask, T var, int src, int width = warpSize) {               \
        return ember_emu::shuffle<T>(ember_emu::OP_SHFL, mask, var, (unsigned)src, width);          \
    }                                                                                                 \
    static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {     \
        return ember_emu::shuffle<T>(ember_emu::OP_SHFL_UP, mask, var, delta, width);               \
    }                                                                                                 \
    static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {   \
        return ember_emu::shuffle<T>(ember_emu::OP_SHFL_DOWN, mask, var, delta, width);             \
    }                                                                                                 \
    static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {     \
        return ember_emu::shuffle<T>(ember_emu::OP_SHFL_XOR, mask, var, (unsigned)lane_mask, width); \
    }
EMBER_EMU_SHUFFLES(int)
EMBER_EMU_SHUFFLES(unsigned int)
EMBER_EMU_SHUFFLES(long)
EMBER_EMU_SHUFFLES(unsigned long)
EMBER_EMU_SHUFFLES(long long)
EMBER_EMU_SHUFFLES(unsigned long long)
EMBER_EMU_SHUFFLES(float)
EMBER_EMU_SHUFFLES(double)
EMBER_EMU_SHUFFLES(__half)
#undef EMBER_EMU_SHUFFLES
