// ember's CUDA CPU emulator: compiles ember-generated CUDA C with g++ (-DEMBER_EMULATE) and runs it on the CPU.
//
// Threads of a block are fibers, so __syncthreads(), warp shuffles/votes and WMMA collectives are real
// rendezvous points; blocks run one after another. With EMBER_EMU_CHECK=1 every global and shared access is
// checked (bounds, never-written shared elements, missing barriers, write-after-read races). A violation records
// a message naming the kernel, block, thread, buffer and index and aborts the launch; the process keeps working.
// Everything lives in an anonymous namespace: each compiled module is one translation unit with private state.
//
// With checking on, `p[i]` and `s[i]` are proxies that convert to the element type, so generated code should not
// bind them with `auto` (that keeps the proxy) nor pass them straight to a template that deduces from them; an
// element of a non-const __half buffer converts implicitly to __half only (use __half2float or a cast for float).
#pragma once

#ifndef EMBER_EMU_CHECK
#define EMBER_EMU_CHECK 0
#endif

// Compile time matters (tests build many modules): with libstdc++, take the C math/stdlib headers directly instead
// of <cmath>'s wrappers (a third of a second per module) and declare the float overloads CUDA code expects.
#if defined(__GNUC__) && !defined(__clang__) && !defined(_GLIBCXX_INCLUDE_NEXT_C_HEADERS)
#define _GLIBCXX_INCLUDE_NEXT_C_HEADERS
#include <math.h>
#include <stdlib.h>
#undef _GLIBCXX_INCLUDE_NEXT_C_HEADERS
#define EMBER_EMU_C_MATH 1
#else
#include <math.h>
#include <stdlib.h>
#define EMBER_EMU_C_MATH 0
#endif
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

#include "emu_types.h"
#include "emu_fiber.h"
#include "emu_warp.h"
#include "emu_memory.h"
#include "emu_async.h"
#include "emu_wmma.h"

// Per-fiber built-in variables (defined last so the emulator's own code never sees these macros).
#define threadIdx (::ember_emu::g_cur->thread_idx)
#define blockIdx (::ember_emu::g_block_idx)
#define blockDim (::ember_emu::g_block_dim)
#define gridDim (::ember_emu::g_grid_dim)

#define EMBER_LOAD4(p, i) (::ember_emu::load4((p), (i)))
#define EMBER_STORE4(p, i, v) (::ember_emu::store4((p), (i), (v)))
