// Emulator runtime: the per-block context (UB arena, buffer records, sync history), the GM registry with write
// ownership, violations, block indices, sync primitives and the launch loop (ascendc.md §7.2 items 2 and 6,
// §7.3 e/f/g).
#pragma once
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <algorithm>
#include <string>
#include <vector>

#include "ember_types.h"

namespace ember_emu {

struct Violation {
    std::string msg;
};

// Raises a rule violation; the launch loop prefixes the kernel name and block index.
[[noreturn]] inline void fail(const char* rule, const char* fmt, ...)
    __attribute__((format(printf, 2, 3), cold));
inline void fail(const char* rule, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    throw Violation{std::string("[") + rule + "] " + buf};
}

enum class Slot : uint8_t { FREE, OCCUPIED, ENQUE, DEQUE, TBUF };

inline const char* slot_name(Slot s) {
    switch (s) {
        case Slot::FREE: return "FREE";
        case Slot::OCCUPIED: return "OCCUPIED";
        case Slot::ENQUE: return "ENQUE";
        case Slot::DEQUE: return "DEQUE";
        default: return "TBUF";
    }
}

// The pipe (instruction queue) an access is issued on; APIs set it with PipeScope (vector ops: V).
enum class Pipe : uint8_t { NONE, S, V, MTE2, MTE3 };

inline Pipe& current_pipe() {
    static Pipe p = Pipe::V;
    return p;
}

struct PipeScope {
    Pipe saved;
    explicit PipeScope(Pipe p) : saved(current_pipe()) { current_pipe() = p; }
    ~PipeScope() { current_pipe() = saved; }
};

// One UB buffer: a queue slot or a TBuf. For a TBuf the last write (pipe, time, byte range) is kept for the
// manual-sync hazard check; queue buffers are ordered by EnQue/DeQue instead.
struct BufRec {
    uint32_t start, len;  // bytes in the UB arena
    Slot state;
    AscendC::TPosition pos;
    int32_t que;          // owning queue id, -1 for a TBuf
    uint32_t gen;         // bumped by FreeTensor: stale views fail
    Pipe wpipe = Pipe::NONE;
    uint64_t wtick = 0;
    uint32_t wlo = 0, whi = 0;
};

// A GM buffer the driver (or GmAlloc) registered. owner[b] = 1 + the block that wrote byte b (0: never written).
struct GmRange {
    uint8_t* lo;
    uint64_t bytes;
    std::string name;
    bool output, check_unwritten;
    std::vector<uint16_t> owner;
};

enum Stat { STAT_UB_PEAK, STAT_PIPE_BARRIER, STAT_FLAGS, STAT_SYNC_ALL, STAT_COUNT };

constexpr int kMaxLivePerPosition = EMBER_ASCEND_ARCH == 1001 ? 4 : 8;
constexpr uint32_t kTmpUbOffset = 184 * 1024;

struct Ctx {
    int64_t block = 0, num_blocks = 1;
    std::vector<BufRec> bufs;
    uint32_t ub_used = 0;
    int32_t next_que = 0;
    bool pipe_alive = false;
    std::vector<GmRange> gm;
    uint64_t stats[STAT_COUNT] = {};
    std::string warnings;
    // Sync history of the block: a logical clock, when each HardEvent was last waited for, when each pipe had its
    // last PipeBarrier, and the SetFlags not yet waited for (per event and event id).
    uint64_t tick = 0;
    uint64_t waited[(int)AscendC::HardEvent::MAX] = {};
    uint64_t barrier[PIPE_FIX + 1] = {};
    uint16_t pending[(int)AscendC::HardEvent::MAX][8] = {};
    alignas(64) uint8_t ub[EMBER_ASCEND_UB_BYTES];

    void begin_block(int64_t b) {
        block = b;
        bufs.clear();
        ub_used = 0;
        next_que = 0;
        pipe_alive = false;
        tick = 0;
        std::memset(waited, 0, sizeof waited);
        std::memset(barrier, 0, sizeof barrier);
        std::memset(pending, 0, sizeof pending);
        std::memset(ub, 0xff, sizeof ub);  // UB starts as garbage: all-ones bytes are NaN for half and float
    }
    void warn(const std::string& w) {
        if (warnings.find(w) == std::string::npos) warnings += w + "\n";
    }
};

inline Ctx& ctx() {
    static Ctx* c = new Ctx();
    return *c;
}

// ---- GM registry -------------------------------------------------------------------------------------------

inline int find_gm(const void* p, uint64_t bytes) {
    auto& g = ctx().gm;
    const uint8_t* q = (const uint8_t*)p;
    int found = -1;
    for (size_t i = 0; i < g.size(); ++i) {
        if (q >= g[i].lo && q + bytes <= g[i].lo + g[i].bytes) {
            if (found < 0 || (g[i].output && !g[found].output)) found = (int)i;  // aliases: prefer the output
        }
    }
    return found;
}

inline void gm_register(uint8_t* p, uint64_t bytes, const char* name, bool output, bool check_unwritten) {
    GmRange r{p, bytes, name, output, check_unwritten, {}};
    if (EMBER_ASCEND_CHECK && output) r.owner.assign(bytes, 0);
    ctx().gm.push_back(std::move(r));
}

// Records a GM write of [p, p+bytes) by the current block; another block's earlier write there is a race.
inline void gm_mark_write(int idx, const void* p, uint64_t bytes, bool atomic, const char* api) {
    Ctx& c = ctx();
    GmRange& r = c.gm[idx];
    if (!r.output)
        fail("gm-write-to-input", "%s writes GM buffer '%s', which the launch declares as an input", api,
             r.name.c_str());
    if (!EMBER_ASCEND_CHECK || atomic || r.owner.empty()) return;
    const uint16_t me = (uint16_t)(c.block + 1);
    uint64_t off = (uint64_t)((const uint8_t*)p - r.lo);
    uint16_t* o = r.owner.data() + off;
    for (uint64_t i = 0; i < bytes; ++i) {
        if (o[i] != me) {
            if (o[i] != 0)
                fail("gm-overlap", "%s writes bytes %llu.. of GM buffer '%s' that block %d already wrote "
                     "(overlapping GM writes by different blocks race on the NPU)", api,
                     (unsigned long long)(off + i), r.name.c_str(), o[i] - 1);
            o[i] = me;
        }
    }
}

inline const char* event_name(AscendC::HardEvent e) {
    static const char* names[] = {
        "MTE2_MTE1", "MTE1_MTE2", "MTE1_M", "M_MTE1", "MTE2_V", "V_MTE2", "MTE3_V", "V_MTE3", "M_V", "V_M", "V_V",
        "MTE3_MTE1", "MTE1_MTE3", "MTE1_V", "MTE2_M", "M_MTE2", "V_MTE1", "M_FIX", "FIX_M", "MTE3_MTE2",
        "MTE2_MTE3", "S_V", "V_S", "S_MTE2", "MTE2_S", "S_MTE3", "MTE3_S", "MTE2_FIX", "FIX_MTE2", "FIX_S", "M_S",
        "FIX_MTE3"};
    static_assert(sizeof names / sizeof names[0] == (size_t)AscendC::HardEvent::MAX, "one name per HardEvent");
    return names[(int)e];
}

}  // namespace ember_emu

// ---- block indices and sync recording ------------------------------------------------------------------------

namespace AscendC {

inline int64_t GetBlockIdx() { return ember_emu::ctx().block; }
inline int64_t GetBlockNum() { return ember_emu::ctx().num_blocks; }
inline int64_t GetSubBlockIdx() { return 0; }
inline int64_t GetTaskRation() { return 1; }

inline void pipe_barrier(pipe_t p) {
    ember_emu::Ctx& c = ember_emu::ctx();
    c.stats[ember_emu::STAT_PIPE_BARRIER]++;
    c.barrier[p] = ++c.tick;
}
template <pipe_t P>
inline void PipeBarrier() { pipe_barrier(P); }

template <HardEvent E>
inline void SetFlag(int32_t id) {
    ember_emu::Ctx& c = ember_emu::ctx();
    if (id < 0 || id > 7) ember_emu::fail("sync-event", "SetFlag with event id %d outside [0, 7]", id);
    c.stats[ember_emu::STAT_FLAGS]++;
    c.pending[(int)E][id]++;
}
template <HardEvent E>
inline void WaitFlag(int32_t id) {
    ember_emu::Ctx& c = ember_emu::ctx();
    if (id < 0 || id > 7) ember_emu::fail("sync-event", "WaitFlag with event id %d outside [0, 7]", id);
    if (c.pending[(int)E][id] == 0)
        ember_emu::fail("sync-wait-without-set", "WaitFlag<HardEvent::%s>(%d) with no earlier SetFlag of that "
                        "event (the NPU would hang)", ember_emu::event_name(E), id);
    c.stats[ember_emu::STAT_FLAGS]++;
    c.pending[(int)E][id]--;
    c.waited[(int)E] = ++c.tick;
}
// Blocks run one after another here, so a cross-core barrier cannot be honoured: report it.
inline void SyncAll() {
    ember_emu::ctx().stats[ember_emu::STAT_SYNC_ALL]++;
    if (ember_emu::ctx().num_blocks > 1)
        ember_emu::fail("sync-all", "SyncAll across %lld blocks cannot be emulated with sequential blocks",
                        (long long)ember_emu::ctx().num_blocks);
}

inline void SetKernelMode(KernelMode) {}

// ---- host-side CPU-twin API (GmAlloc, ICPU_RUN_KF) -----------------------------------------------------------

inline void* GmAlloc(size_t bytes) {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p) ember_emu::gm_register((uint8_t*)p, bytes, "GmAlloc", true, false);
    return p;
}

inline void GmFree(void* p) {
    auto& g = ember_emu::ctx().gm;
    for (size_t i = 0; i < g.size(); ++i)
        if (g[i].lo == p) { g.erase(g.begin() + (long)i); break; }
    std::free(p);
}

}  // namespace AscendC

namespace ember_emu {

inline uint64_t g_tiling_key = 0;

// Runs every block of one launch in the given order, each with a fresh context, then the end-of-launch checks.
// Returns 0, or 1 with the message in err.
template <class Body>
int run_blocks(const char* kernel, int64_t num_blocks, const int64_t* order, Body&& body, std::string& err) {
    Ctx& c = ctx();
    c.num_blocks = num_blocks;
    for (GmRange& r : c.gm)  // ownership is per launch (GmAlloc buffers outlive one ICPU_RUN_KF)
        std::fill(r.owner.begin(), r.owner.end(), 0);
    int64_t current = -1;
    try {
        if (num_blocks < 1 || num_blocks > 65535)
            fail("num-blocks", "numBlocks = %lld is outside [1, 65535]", (long long)num_blocks);
        for (int64_t i = 0; i < num_blocks; ++i) {
            current = order ? order[i] : i;
            c.begin_block(current);
            body();
            for (const BufRec& b : c.bufs) {
                if (b.state == Slot::ENQUE)
                    fail("queue-leak", "a tensor was EnQue'd but never DeQue'd before the block ended");
                if (b.state == Slot::OCCUPIED || b.state == Slot::DEQUE)
                    fail("queue-leak", "AllocTensor without FreeTensor: a queue buffer is still %s at block end",
                         slot_name(b.state));
            }
        }
        current = -1;
        if (EMBER_ASCEND_CHECK) {
            for (const GmRange& r : c.gm) {
                if (!r.check_unwritten) continue;
                for (uint64_t b = 0; b < r.bytes; ++b) {
                    if (r.owner[b] == 0) {
                        uint64_t n = 0;
                        for (uint64_t k = b; k < r.bytes; ++k) n += r.owner[k] == 0;
                        fail("gm-unwritten", "output '%s': %llu of %llu bytes were never written (first at byte "
                             "%llu)", r.name.c_str(), (unsigned long long)n, (unsigned long long)r.bytes,
                             (unsigned long long)b);
                    }
                }
            }
        }
    } catch (const Violation& v) {
        char head[256];
        if (current >= 0)
            snprintf(head, sizeof head, "kernel %s, block %lld of %lld: ", kernel, (long long)current,
                     (long long)num_blocks);
        else
            snprintf(head, sizeof head, "kernel %s (after all %lld blocks): ", kernel, (long long)num_blocks);
        err = head + v.msg;
        return 1;
    }
    return 0;
}

}  // namespace ember_emu

// CPU-twin launch: blocks run sequentially; a violation is printed and aborts, as tikicpulib does.
#define ICPU_RUN_KF(func, blockdim, ...)                                                                     \
    do {                                                                                                   \
        std::string ember_err_;                                                                            \
        if (::ember_emu::run_blocks(#func, (int64_t)(blockdim), nullptr, [&]() { func(__VA_ARGS__); },     \
                                    ember_err_)) {                                                         \
            fprintf(stderr, "%s\n", ember_err_.c_str());                                                   \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)
#define ICPU_SET_TILING_KEY(k) (::ember_emu::g_tiling_key = (uint64_t)(k))
#define TILING_KEY_IS(k) (::ember_emu::g_tiling_key == (uint64_t)(k))
// Op-project tiling: REGISTER_TILING_DEFAULT(Struct) names the struct GET_TILING_DATA copies the bytes into.
#define REGISTER_TILING_DEFAULT(type) using EmberTilingDefault = type
#define GET_TILING_DATA(var, ptr)                                                                          \
    EmberTilingDefault var;                                                                                \
    std::memcpy(&var, (const void*)(ptr), sizeof(var))
#define GET_TILING_DATA_WITH_STRUCT(type, var, ptr)                                                        \
    type var;                                                                                              \
    std::memcpy(&var, (const void*)(ptr), sizeof(var))

namespace ember_emu {

enum GmFlag : uint8_t { GM_OUTPUT = 1, GM_CHECK_UNWRITTEN = 2 };

// The body of every generated ember_launch_NAME shim: registers the GM buffers, runs the blocks in `order`
// and hands back the error (rc 1) or any warnings (rc 0) in err, and the launch statistics.
template <class Body>
int launch(const char* kernel, int nparams, uint8_t* const* gm, const uint64_t* gm_bytes, const uint8_t* flags,
           const char* const* names, int64_t num_blocks, const int64_t* order, uint64_t* stats, char* err,
           uint64_t errlen, Body&& body) {
    Ctx& c = ctx();
    c.gm.clear();
    c.warnings.clear();
    for (int s = 0; s < STAT_COUNT; ++s) c.stats[s] = 0;
    for (int i = 0; i < nparams; ++i)
        gm_register(gm[i], gm_bytes[i], names[i], flags[i] & GM_OUTPUT, flags[i] & GM_CHECK_UNWRITTEN);
    std::string msg;
    int rc;
    try {
        rc = run_blocks(kernel, num_blocks, order, body, msg);
    } catch (const std::exception& e) {
        msg = std::string("kernel ") + kernel + ": " + e.what();
        rc = 1;
    }
    if (rc == 0) msg = c.warnings;
    for (int s = 0; s < STAT_COUNT; ++s) stats[s] = c.stats[s];
    c.gm.clear();
    if (errlen) {
        std::strncpy(err, msg.c_str(), errlen - 1);
        err[errlen - 1] = 0;
    }
    return rc;
}

}  // namespace ember_emu
