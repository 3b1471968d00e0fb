// Fibers and the block scheduler: every thread of a block is a fiber with its own stack; a fiber gives up the CPU
// only at __syncthreads(), warp collectives (emu_warp.h) and when it finishes. Blocks run one after another.
// Errors record a message and jump back to the scheduler, abandoning the block's fibers (their stacks are reused).
#pragma once

#include <sys/mman.h>

#if defined(__x86_64__) && !defined(EMBER_EMU_UCONTEXT)
#define EMBER_EMU_ASM_SWITCH 1
// ember_emu_switch(save, load): push the callee-saved registers, store the stack pointer in *save, switch to the
// stack `load` and pop its registers. No signal mask or FPU control word is switched (kernels change neither).
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl ember_emu_switch\n"
    ".hidden ember_emu_switch\n"
    ".type ember_emu_switch,@function\n"
    "ember_emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size ember_emu_switch,.-ember_emu_switch\n");
extern "C" __attribute__((visibility("hidden"))) void ember_emu_switch(void** save, void* load);
#else
#define EMBER_EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace ember_emu {
namespace {

enum FiberState : unsigned char { F_NEW, F_READY, F_BARRIER, F_WARP, F_DONE };
enum WarpOp : unsigned char {
    OP_SYNCWARP, OP_SHFL, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_ANY, OP_ALL,
    OP_WMMA_LOAD, OP_WMMA_MMA, OP_WMMA_STORE,
};
const char* const k_op_names[] = {
    "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
    "__any_sync", "__all_sync", "wmma::load_matrix_sync", "wmma::mma_sync", "wmma::store_matrix_sync",
};

struct Fiber {
    uint3 thread_idx;
    unsigned tid, lane, warp;
    FiberState state;
    unsigned char op;      // the warp collective it waits in
    unsigned mask;         // that collective's mask
    unsigned arg;          // shuffle source lane / delta / lane mask
    int width;             // shuffle width
    uint64_t value;        // the value it contributes
    uint64_t result;       // what the collective gives back to it
    void* payload;         // collective-specific data on its own stack (WMMA)
    unsigned shared_decls; // EMBER_SHARED declarations it has passed in this block
    void* copies;          // its cp.async copies not yet waited for (emu_async.h), grown as needed
    unsigned ncopies, copies_cap;
    int stack;             // index of its stack in the pool, -1 when it has none
#if EMBER_EMU_ASM_SWITCH
    void* sp;
#else
    ucontext_t ctx;
#endif
};

constexpr unsigned kMaxThreads = 1024;
// CUDA allows 512 KiB of local memory per thread; stacks are reserved lazily (MAP_NORESERVE), so only the pages a
// thread touches cost memory. A kernel overflowing its stack hits the guard page (a crash, as nothing can recover).
constexpr size_t kStackBytes = 768 * 1024;
constexpr size_t kGuardBytes = 4096;

Fiber g_fibers[kMaxThreads];
Fiber* g_cur;
uint3 g_block_idx;
dim3 g_block_dim;
dim3 g_grid_dim;
unsigned g_nthreads, g_done, g_bar_arrived;
uint32_t g_epoch = 1;        // bumped at every block start and every completed __syncthreads()
uint32_t g_block_epoch0 = 1; // the epoch the current block started in
unsigned g_warp_exist[kMaxThreads / 32];  // lanes that exist in each warp (the last warp may be partial)
uint32_t g_warp_gen[kMaxThreads / 32];    // completed __syncwarp()s per warp (for the shared-race checker)
const char* g_kernel = "";
void (*g_body)(void*);
void* g_body_ctx;
bool g_failed;
char g_err[2048];

char* g_stacks[kMaxThreads];  // mmap'ed as needed, reused by every block, unmapped when the launch ends
unsigned g_nstacks;
int g_free_stacks[kMaxThreads];
unsigned g_nfree;
#if EMBER_EMU_ASM_SWITCH
void* g_sched_sp;
#else
ucontext_t g_sched_ctx;
#endif

// Shared-memory arena state (used by emu_memory.h); a block's declarations are numbered in the order reached.
struct SharedSlot {
    int id;
    long long n;
    size_t elem_size, begin, end;
};
constexpr unsigned kMaxSharedSlots = 64;
SharedSlot g_slots[kMaxSharedSlots];
unsigned g_launch_slots;  // slots laid out in this launch (their metadata is valid)
unsigned g_block_slots;   // slots the current block has reached
size_t g_block_shared_bytes;

char* g_arena;  // shared-memory arena (emu_memory.h), allocated by the first declaration of a launch

// A loaded module keeps nothing between launches: many modules live in one process (a test session loads hundreds).
void release_launch_memory() {
    for (unsigned i = 0; i < g_nstacks; ++i)
        munmap(g_stacks[i], kGuardBytes + kStackBytes);
    g_nstacks = 0;
    g_nfree = 0;
    free(g_arena);
    g_arena = nullptr;
}

struct ThreadName {
    char s[48];
};

ThreadName thread_name(unsigned tid) {
    ThreadName t;
    const unsigned bx = g_block_dim.x, by = g_block_dim.y;
    snprintf(t.s, sizeof t.s, "(%u,%u,%u)", tid % bx, (tid / bx) % by, tid / (bx * by));
    return t;
}

__attribute__((format(printf, 2, 0))) void write_error(bool with_thread, const char* fmt, va_list ap) {
    int n = snprintf(g_err, sizeof g_err, "kernel %s: block (%u,%u,%u)", g_kernel, g_block_idx.x, g_block_idx.y,
                     g_block_idx.z);
    if (with_thread && n >= 0 && (size_t)n < sizeof g_err)
        n += snprintf(g_err + n, sizeof g_err - n, " thread %s", thread_name(g_cur->tid).s);
    if (n >= 0 && (size_t)n < sizeof g_err)
        n += snprintf(g_err + n, sizeof g_err - n, ": ");
    if (n >= 0 && (size_t)n < sizeof g_err)
        vsnprintf(g_err + n, sizeof g_err - n, fmt, ap);
}

__attribute__((format(printf, 1, 2))) void set_block_error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_error(false, fmt, ap);
    va_end(ap);
}

[[noreturn]] void abort_launch() {
    g_failed = true;
#if EMBER_EMU_ASM_SWITCH
    void* dead;
    ember_emu_switch(&dead, g_sched_sp);
#else
    setcontext(&g_sched_ctx);
#endif
    __builtin_unreachable();
}

// Errors raised by the running thread: "kernel K: block (..) thread (..): <message>".
[[noreturn]] __attribute__((format(printf, 1, 2))) void fail_thread(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_error(true, fmt, ap);
    va_end(ap);
    abort_launch();
}

// Errors about the block as a whole (the message names the threads involved).
[[noreturn]] [[maybe_unused]] __attribute__((format(printf, 1, 2))) void fail_block(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_error(false, fmt, ap);
    va_end(ap);
    abort_launch();
}

void yield_to_scheduler() {
#if EMBER_EMU_ASM_SWITCH
    ember_emu_switch(&g_cur->sp, g_sched_sp);
#else
    swapcontext(&g_cur->ctx, &g_sched_ctx);
#endif
}

void fiber_main() {
    g_body(g_body_ctx);
    Fiber* f = g_cur;
    if (f->ncopies)
        fail_thread("exits with %u cp.async copies to shared memory never waited for (EMBER_CP_ASYNC_WAIT)",
                    f->ncopies);
    f->state = F_DONE;
    ++g_done;
    g_free_stacks[g_nfree++] = f->stack;  // nothing runs on it once we switch away below
    f->stack = -1;
#if EMBER_EMU_ASM_SWITCH
    void* dead;
    ember_emu_switch(&dead, g_sched_sp);
#else
    setcontext(&g_sched_ctx);
#endif
    __builtin_unreachable();
}

bool start_fiber(Fiber* f) {
    if (g_nfree == 0) {
        void* mem = mmap(nullptr, kGuardBytes + kStackBytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (mem == MAP_FAILED) {
            set_block_error("cannot allocate a %zu-byte fiber stack for thread %s", kStackBytes,
                            thread_name(f->tid).s);
            return false;
        }
        mprotect(mem, kGuardBytes, PROT_NONE);  // a kernel overflowing its stack faults instead of corrupting
        g_stacks[g_nstacks] = static_cast<char*>(mem);
        g_free_stacks[g_nfree++] = (int)g_nstacks++;
    }
    f->stack = g_free_stacks[--g_nfree];
    char* low = g_stacks[f->stack] + kGuardBytes;
#if EMBER_EMU_ASM_SWITCH
    // Stagger the stack tops across cache sets: equally spaced stacks would all map to the same L1 set.
    void** sp = reinterpret_cast<void**>(low + kStackBytes - (size_t)(f->stack % 64) * 64);
    *--sp = nullptr;                                  // fiber_main's (never used) return address
    *--sp = reinterpret_cast<void*>(&fiber_main);     // where ember_emu_switch's `ret` goes
    for (int i = 0; i < 6; ++i)
        *--sp = nullptr;                              // rbp rbx r12 r13 r14 r15
    f->sp = sp;
#else
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = low;
    f->ctx.uc_stack.ss_size = kStackBytes;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, fiber_main, 0);
#endif
    return true;
}

void run_fiber(Fiber* f) {
    g_cur = f;
#if EMBER_EMU_ASM_SWITCH
    ember_emu_switch(&g_sched_sp, f->sp);
#else
    swapcontext(&g_sched_ctx, &f->ctx);
#endif
}

const char* describe_wait(const Fiber* g) {
    switch (g->state) {
    case F_DONE: return "has exited";
    case F_BARRIER: return "waits at __syncthreads()";
    case F_WARP: return "waits in a different warp operation";
    default: return "cannot run";
    }
}

// No fiber can run but the block is not finished: explain why.
void diagnose_stall() {
    const Fiber* at_barrier = nullptr;
    const Fiber* exited = nullptr;
    const Fiber* in_warp = nullptr;
    unsigned waiting = 0;
    for (unsigned i = 0; i < g_nthreads; ++i) {
        const Fiber* g = &g_fibers[i];
        if (g->state == F_BARRIER) {
            ++waiting;
            if (!at_barrier) at_barrier = g;
        } else if (g->state == F_DONE) {
            if (!exited) exited = g;
        } else if (g->state == F_WARP && !in_warp) {
            in_warp = g;
        }
    }
    if (at_barrier && exited) {
        set_block_error("divergent __syncthreads(): %u of %u threads wait at a barrier (e.g. thread %s) that thread "
                        "%s never reaches because it has exited", waiting, g_nthreads,
                        thread_name(at_barrier->tid).s, thread_name(exited->tid).s);
        return;
    }
    if (in_warp) {
        const Fiber* base = g_fibers + in_warp->warp * 32;
        const unsigned m = in_warp->mask & g_warp_exist[in_warp->warp];
        for (unsigned j = 0; j < 32; ++j) {
            const Fiber* g = base + j;
            if (!((m >> j) & 1u) || (g->state == F_WARP && g->op == in_warp->op && g->mask == in_warp->mask))
                continue;
            set_block_error("deadlock: thread %s waits in %s (mask 0x%08x) for thread %s, which %s",
                            thread_name(in_warp->tid).s, k_op_names[in_warp->op], in_warp->mask,
                            thread_name(g->tid).s, describe_wait(g));
            return;
        }
    }
    set_block_error("deadlock: %u of %u threads wait at __syncthreads() while the others wait in warp operations",
                    waiting, g_nthreads);
}

// Runs every thread of the current block to completion; 0 on success, 1 with g_err set on failure.
int run_block() {
    ++g_epoch;
    g_block_epoch0 = g_epoch;
    g_done = 0;
    g_bar_arrived = 0;
    g_block_slots = 0;
    g_block_shared_bytes = 0;
    g_nfree = g_nstacks;
    for (unsigned i = 0; i < g_nstacks; ++i)
        g_free_stacks[i] = (int)i;
    for (unsigned i = 0; i < g_nthreads; ++i) {
        g_fibers[i].state = F_NEW;
        g_fibers[i].shared_decls = 0;
        g_fibers[i].ncopies = 0;
        g_fibers[i].stack = -1;
    }
    for (;;) {
        bool progressed = false;
        for (unsigned i = 0; i < g_nthreads; ++i) {
            Fiber* f = &g_fibers[i];
            if (f->state == F_NEW) {
                if (!start_fiber(f))
                    return 1;
                f->state = F_READY;
            } else if (f->state != F_READY) {
                continue;
            }
            run_fiber(f);
            progressed = true;
            if (g_failed)
                return 1;
        }
        if (g_done == g_nthreads)
            return 0;
        if (!progressed) {
            diagnose_stall();
            return 1;
        }
    }
}

// The last thread to arrive releases the others; all of them then resume in thread order (lowest first), which
// keeps the order of execution - and so which thread an error names - independent of who arrived last.
void syncthreads() {
    if (++g_bar_arrived == g_nthreads) {
        g_bar_arrived = 0;
        ++g_epoch;
        for (unsigned i = 0; i < g_nthreads; ++i)
            if (g_fibers[i].state == F_BARRIER)
                g_fibers[i].state = F_READY;
    } else {
        g_cur->state = F_BARRIER;
    }
    yield_to_scheduler();
}

// Runs `body` (the kernel call with its arguments) for every thread of every block.
// dims: grid x y z, block x y z (validated by the Python side). Returns 0, or 1 with the message in err.
template <class F>
int launch(const char* kernel, const long long* dims, char* err, size_t errlen, F& body) {
    struct Thunk {
        static void run(void* p) { (*static_cast<F*>(p))(); }
    };
    g_kernel = kernel;
    g_body = &Thunk::run;
    g_body_ctx = &body;
    g_failed = false;
    g_grid_dim = dim3((unsigned)dims[0], (unsigned)dims[1], (unsigned)dims[2]);
    g_block_dim = dim3((unsigned)dims[3], (unsigned)dims[4], (unsigned)dims[5]);
    const unsigned long long n = (unsigned long long)dims[3] * dims[4] * dims[5];
    if (n == 0 || n > kMaxThreads || dims[0] <= 0 || dims[1] <= 0 || dims[2] <= 0) {
        snprintf(err, errlen, "kernel %s: invalid launch configuration", kernel);
        return 1;
    }
    g_nthreads = (unsigned)n;
    const unsigned bx = g_block_dim.x, by = g_block_dim.y;
    for (unsigned t = 0; t < g_nthreads; ++t) {
        Fiber* f = &g_fibers[t];
        f->tid = t;
        f->lane = t % 32;
        f->warp = t / 32;
        f->thread_idx.x = t % bx;
        f->thread_idx.y = (t / bx) % by;
        f->thread_idx.z = t / (bx * by);
    }
    for (unsigned w = 0; w * 32 < g_nthreads; ++w) {
        const unsigned count = g_nthreads - w * 32;
        g_warp_exist[w] = count >= 32 ? 0xffffffffu : (1u << count) - 1u;
    }
    memset(g_warp_gen, 0, sizeof g_warp_gen);
    g_launch_slots = 0;
    for (unsigned z = 0; z < g_grid_dim.z; ++z)
        for (unsigned y = 0; y < g_grid_dim.y; ++y)
            for (unsigned x = 0; x < g_grid_dim.x; ++x) {
                g_block_idx.x = x;
                g_block_idx.y = y;
                g_block_idx.z = z;
                if (run_block()) {
                    snprintf(err, errlen, "%s", g_err);
                    release_launch_memory();
                    return 1;
                }
            }
    release_launch_memory();
    return 0;
}

}  // namespace
}  // namespace ember_emu

static inline void __syncthreads() { ember_emu::syncthreads(); }
