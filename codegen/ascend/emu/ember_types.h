// AscendC keywords, scalar types and enums for the CPU emulator (ascendc.md §7.2 item 1).
// Device qualifiers are empty, as in Huawei's CPU twin mode; half is _Float16; bfloat16_t rounds to nearest even.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#ifndef EMBER_ASCEND_ARCH
#define EMBER_ASCEND_ARCH 2201
#endif
#ifndef EMBER_ASCEND_UB_BYTES
#define EMBER_ASCEND_UB_BYTES (EMBER_ASCEND_ARCH == 2201 ? 196608 : 262144)
#endif
#ifndef EMBER_ASCEND_CHECK
#define EMBER_ASCEND_CHECK 1
#endif
#ifndef __NPU_ARCH__
#define __NPU_ARCH__ EMBER_ASCEND_ARCH
#endif

#define __global__
#define __aicore__
#define __vector__
#define __cube__
#define __gm__
#define __ubuf__
#define __sync_alias__
#define __inout_pipe__(x)
#define __mix__(...)
#define GM_ADDR uint8_t*

using half = _Float16;

struct bfloat16_t {
    uint16_t bits;
    bfloat16_t() = default;
    bfloat16_t(float f) {  // round to nearest even; NaN stays a quiet NaN
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { bits = (uint16_t)((u >> 16) | 0x40); return; }
        u += 0x7fffu + ((u >> 16) & 1u);
        bits = (uint16_t)(u >> 16);
    }
    bfloat16_t(double d) : bfloat16_t((float)d) {}
    bfloat16_t(int v) : bfloat16_t((float)v) {}
    operator float() const {
        uint32_t u = (uint32_t)bits << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
};

enum class KernelMode { MIX_MODE = 0, AIC_MODE, AIV_MODE };

enum KernelMetaType {
    KERNEL_TYPE_AIV_ONLY, KERNEL_TYPE_AIC_ONLY, KERNEL_TYPE_MIX_AIV_1_0, KERNEL_TYPE_MIX_AIC_1_0,
    KERNEL_TYPE_MIX_AIC_1_1, KERNEL_TYPE_MIX_AIC_1_2, KERNEL_TYPE_AICORE, KERNEL_TYPE_VECTORCORE,
    KERNEL_TYPE_MIX_AICORE, KERNEL_TYPE_MIX_VECTOR_CORE
};
#define KERNEL_TASK_TYPE_DEFAULT(x) ((void)(x))
#define KERNEL_TASK_TYPE(key, value) ((void)(key), (void)(value))

enum pipe_t { PIPE_S = 0, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_MTE2, PIPE_MTE3, PIPE_ALL, PIPE_FIX };
enum event_t { EVENT_ID0 = 0, EVENT_ID1, EVENT_ID2, EVENT_ID3, EVENT_ID4, EVENT_ID5, EVENT_ID6, EVENT_ID7 };

enum class CubeFormat { ND = 0, NZ, ZN, ZZ, NN, ND_ALIGN, SCALAR, VECTOR };

namespace AscendC {

enum class TPosition : uint8_t {
    GM, A1, A2, B1, B2, C1, C2, CO1, CO2, VECIN, VECOUT, VECCALC, LCM, SPM, SHM, TSCM, MAX
};
using QuePosition = TPosition;

enum class HardEvent : uint8_t {
    MTE2_MTE1, MTE1_MTE2, MTE1_M, M_MTE1, MTE2_V, V_MTE2, MTE3_V, V_MTE3, M_V, V_M, V_V, MTE3_MTE1, MTE1_MTE3,
    MTE1_V, MTE2_M, M_MTE2, V_MTE1, M_FIX, FIX_M, MTE3_MTE2, MTE2_MTE3, S_V, V_S, S_MTE2, MTE2_S, S_MTE3,
    MTE3_S, MTE2_FIX, FIX_MTE2, FIX_S, M_S, FIX_MTE3, MAX
};

enum class RoundMode { CAST_NONE = 0, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC, CAST_ODD };
enum class CMPMODE { LT = 0, GT, EQ, LE, GE, NE };
enum class SELMODE { VSEL_CMPMASK_SPR = 0, VSEL_TENSOR_SCALAR_MODE, VSEL_TENSOR_TENSOR_MODE };
enum class ReduceOrder { ORDER_VALUE_INDEX = 0, ORDER_INDEX_VALUE, ORDER_ONLY_VALUE, ORDER_ONLY_INDEX };
using ::KernelMode;
using ::CubeFormat;

constexpr int32_t ONE_BLK_SIZE = 32;
constexpr int32_t ONE_REPEAT_BYTE_SIZE = 256;
constexpr int32_t DEFAULT_BLK_NUM = 8;
constexpr int32_t MAX_REPEAT_TIMES = 255;
constexpr int32_t BLOCK_CUBE = 16;
constexpr int32_t TOTAL_UB_SIZE = EMBER_ASCEND_UB_BYTES;

}  // namespace AscendC

namespace tik2 = AscendC;

namespace ember_emu {

template <class T, class... Us>
constexpr bool one_of = (std::is_same_v<T, Us> || ...);

template <class T>
constexpr const char* type_name() {
    if constexpr (std::is_same_v<T, float>) return "float";
    else if constexpr (std::is_same_v<T, half>) return "half";
    else if constexpr (std::is_same_v<T, bfloat16_t>) return "bfloat16_t";
    else if constexpr (std::is_same_v<T, double>) return "double";
    else if constexpr (std::is_same_v<T, int8_t>) return "int8_t";
    else if constexpr (std::is_same_v<T, uint8_t>) return "uint8_t";
    else if constexpr (std::is_same_v<T, int16_t>) return "int16_t";
    else if constexpr (std::is_same_v<T, uint16_t>) return "uint16_t";
    else if constexpr (std::is_same_v<T, int32_t>) return "int32_t";
    else if constexpr (std::is_same_v<T, uint32_t>) return "uint32_t";
    else if constexpr (std::is_same_v<T, int64_t>) return "int64_t";
    else if constexpr (std::is_same_v<T, uint64_t>) return "uint64_t";
    else return "an unsupported type";
}

template <class T>
constexpr bool is_float_v = one_of<T, float, half, bfloat16_t>;

// Arithmetic type an instruction computes in: float for floating types (rounded back to T after each
// instruction, as fp16 hardware does), 64-bit integers for integer types.
template <class T>
using calc_t = std::conditional_t<is_float_v<T>, float, int64_t>;

template <class T>
inline calc_t<T> up(T v) { return (calc_t<T>)v; }
template <class T>
inline T down(calc_t<T> v) { return (T)v; }

}  // namespace ember_emu
