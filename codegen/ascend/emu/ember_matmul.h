// High-level Matmul API (ascendc.md §3 "Matmul high-level API", §7.2 item 7) with ND matrices in GM:
// C[singleCoreM x singleCoreN] = A * B (+ bias), accumulated in float and rounded to C's type once.
// The TCubeTiling is checked against the L0A/L0B/L0C/L1 sizes of the arch when the object is registered.
#pragma once
#include "ember_tensor.h"

struct TCubeTiling {
    int32_t usedCoreNum = 1, M = 0, N = 0, Ka = 0, Kb = 0, singleCoreM = 0, singleCoreN = 0, singleCoreK = 0;
    int32_t baseM = 0, baseN = 0, baseK = 0, depthA1 = 1, depthB1 = 1, stepM = 1, stepN = 1, isBias = 0;
    int32_t transLength = 0, iterateOrder = 0, shareMode = 0, shareL1Size = 0, shareL0CSize = 0, shareUbSize = 0;
    int32_t batchM = 1, batchN = 1, singleBatchM = 1, singleBatchN = 1, stepKa = 1, stepKb = 1;
    int32_t depthAL1CacheUB = 0, depthBL1CacheUB = 0, dbL0A = 1, dbL0B = 1, dbL0C = 1;
};

namespace AscendC {

using ::TCubeTiling;

template <TPosition POS, CubeFormat FORMAT, class T, bool ISTRANS = false>
struct MatmulType {
    using type = T;
    static constexpr TPosition pos = POS;
    static constexpr CubeFormat format = FORMAT;
    static constexpr bool trans = ISTRANS;
};

inline GM_ADDR GetSysWorkSpacePtr() {
    static uint8_t workspace[64];
    return workspace;
}

constexpr uint64_t kL0ABytes = 64 * 1024, kL0BBytes = 64 * 1024;
constexpr uint64_t kL0CBytes = EMBER_ASCEND_ARCH == 2201 ? 128 * 1024 : 256 * 1024;
constexpr uint64_t kL1Bytes = EMBER_ASCEND_ARCH == 2201 ? 512 * 1024 - 128 : 1024 * 1024;

template <class A, class B, class C, class BIAS = MatmulType<TPosition::GM, CubeFormat::ND, float>, class... CFG>
class Matmul {
    using TA = typename A::type;
    using TB = typename B::type;
    using TC = typename C::type;
    using TBias = typename BIAS::type;

public:
    void Init(const TCubeTiling* tiling, TPipe* = nullptr) {
        static_assert(A::pos == TPosition::GM && B::pos == TPosition::GM && C::pos == TPosition::GM,
                      "the emulated Matmul takes A, B and C in GM");
        static_assert(A::format == CubeFormat::ND && B::format == CubeFormat::ND && C::format == CubeFormat::ND,
                      "the emulated Matmul supports CubeFormat::ND only");
        check_types();
        if (!tiling) fail("Init with a null TCubeTiling");
        t_ = *tiling;
        const TCubeTiling& t = t_;
        if (t.M <= 0 || t.N <= 0 || t.Ka <= 0 || t.Kb <= 0 || t.Ka != t.Kb)
            fail("TCubeTiling M=%d N=%d Ka=%d Kb=%d: sizes must be positive and Ka == Kb", t.M, t.N, t.Ka, t.Kb);
        if (t.singleCoreM <= 0 || t.singleCoreN <= 0 || t.singleCoreK <= 0 || t.singleCoreM > t.M ||
            t.singleCoreN > t.N || t.singleCoreK > t.Ka)
            fail("TCubeTiling singleCore %dx%dx%d must be positive and within M=%d N=%d K=%d", t.singleCoreM,
                 t.singleCoreN, t.singleCoreK, t.M, t.N, t.Ka);
        if (t.baseM <= 0 || t.baseN <= 0 || t.baseK <= 0 || t.baseM % 16 || t.baseN % 16 ||
            t.baseK * (int)sizeof(TA) % 32)
            fail("TCubeTiling base %dx%dx%d: baseM/baseN must be multiples of 16 and baseK whole 32-byte blocks",
                 t.baseM, t.baseN, t.baseK);
        const uint64_t l0a = (uint64_t)t.baseM * t.baseK * sizeof(TA) * (t.dbL0A > 1 ? 2 : 1);
        const uint64_t l0b = (uint64_t)t.baseK * t.baseN * sizeof(TB) * (t.dbL0B > 1 ? 2 : 1);
        const uint64_t l0c = (uint64_t)t.baseM * t.baseN * 4 * (t.dbL0C > 1 ? 2 : 1);
        const uint64_t l1 = (uint64_t)t.depthA1 * t.baseM * t.baseK * sizeof(TA) +
                            (uint64_t)t.depthB1 * t.baseN * t.baseK * sizeof(TB);
        if (l0a > kL0ABytes || l0b > kL0BBytes || l0c > kL0CBytes || l1 > kL1Bytes)
            fail("TCubeTiling needs L0A %llu/%llu, L0B %llu/%llu, L0C %llu/%llu, L1 %llu/%llu bytes (arch %d)",
                 (unsigned long long)l0a, (unsigned long long)kL0ABytes, (unsigned long long)l0b,
                 (unsigned long long)kL0BBytes, (unsigned long long)l0c, (unsigned long long)kL0CBytes,
                 (unsigned long long)l1, (unsigned long long)kL1Bytes, EMBER_ASCEND_ARCH);
        orgM_ = t.M; orgN_ = t.N; orgKa_ = t.Ka; orgKb_ = t.Kb;
        m_ = t.singleCoreM; n_ = t.singleCoreN; k_ = t.singleCoreK;
        ready_ = true;
    }
    void SetOrgShape(int orgM, int orgN, int orgKa, int orgKb = -1, int = 0) {
        orgM_ = orgM; orgN_ = orgN; orgKa_ = orgKa; orgKb_ = orgKb < 0 ? orgKa : orgKb;
    }
    void SetSingleShape(int m, int n, int k) { m_ = m; n_ = n; k_ = k; }
    void SetTail(int tailM = -1, int tailN = -1, int tailK = -1) {
        if (tailM > 0) m_ = tailM;
        if (tailN > 0) n_ = tailN;
        if (tailK > 0) k_ = tailK;
    }
    void SetTensorA(const GlobalTensor<TA>& a, bool transA = false) { a_ = a; transA_ = transA; hasA_ = true; }
    void SetTensorB(const GlobalTensor<TB>& b, bool transB = false) { b_ = b; transB_ = transB; hasB_ = true; }
    void SetBias(const GlobalTensor<TBias>& bias) {
        if (!t_.isBias) fail("SetBias although the TCubeTiling has isBias = 0");
        bias_ = bias;
        hasBias_ = true;
    }
    void DisableBias() { hasBias_ = false; }
    void ClearBias() { hasBias_ = false; }

    void IterateAll(const GlobalTensor<TC>& c, uint8_t enAtomic = 0, bool = false, bool = false) {
        run(c, 0, 0, m_, n_, enAtomic != 0, "Matmul::IterateAll");
    }
    // Base blocks of baseM x baseN in iterateOrder (0: along M first); GetTensorC writes the current one.
    bool Iterate(bool = false) {
        need("Iterate");
        const int mb = (m_ + t_.baseM - 1) / t_.baseM, nb = (n_ + t_.baseN - 1) / t_.baseN;
        if (iter_ + 1 >= mb * nb) { iter_ = -1; return false; }
        ++iter_;
        curM_ = t_.iterateOrder == 0 ? iter_ % mb : iter_ / nb;
        curN_ = t_.iterateOrder == 0 ? iter_ / mb : iter_ % nb;
        return true;
    }
    void GetTensorC(const GlobalTensor<TC>& c, uint8_t enAtomic = 0, bool enSequentialWrite = false) {
        if (iter_ < 0) fail("GetTensorC without a successful Iterate");
        const int r0 = curM_ * t_.baseM, c0 = curN_ * t_.baseN;
        const int rows = t_.baseM < m_ - r0 ? t_.baseM : m_ - r0, cols = t_.baseN < n_ - c0 ? t_.baseN : n_ - c0;
        if (enSequentialWrite) fail("GetTensorC with enSequentialWrite is not emulated");
        run(c, r0, c0, rows, cols, enAtomic != 0, "Matmul::GetTensorC");
    }
    void End() { iter_ = -1; }

private:
    TCubeTiling t_{};
    GlobalTensor<TA> a_;
    GlobalTensor<TB> b_;
    GlobalTensor<TBias> bias_;
    int orgM_ = 0, orgN_ = 0, orgKa_ = 0, orgKb_ = 0, m_ = 0, n_ = 0, k_ = 0, iter_ = -1, curM_ = 0, curN_ = 0;
    bool transA_ = false, transB_ = false, hasA_ = false, hasB_ = false, hasBias_ = false, ready_ = false;

    [[noreturn]] static void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2))) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        ember_emu::fail("matmul", "%s", buf);
    }
    static void check_types() {
        constexpr bool ok = (std::is_same_v<TA, half> && std::is_same_v<TB, half>) ||
                            (std::is_same_v<TA, bfloat16_t> && std::is_same_v<TB, bfloat16_t>) ||
                            (std::is_same_v<TA, float> && std::is_same_v<TB, float>);
        if (!ok || !ember_emu::one_of<TC, float, half, bfloat16_t>)
            ember_emu::fail("dtype", "Matmul with A %s, B %s, C %s is not supported (A/B: half, bfloat16_t or "
                            "float pairs; C: float, half or bfloat16_t)", ember_emu::type_name<TA>(),
                            ember_emu::type_name<TB>(), ember_emu::type_name<TC>());
    }
    void need(const char* api) const {
        if (!ready_) fail("%s before REGIST_MATMUL_OBJ / Init", api);
        if (!hasA_ || !hasB_) fail("%s before SetTensorA and SetTensorB", api);
        if (m_ <= 0 || n_ <= 0 || k_ <= 0) fail("%s with an empty shape %dx%dx%d", api, m_, n_, k_);
    }
    // C[r0.., c0..] (rows x cols, row stride orgN) = A*B over k_. Every A/B/bias element read lies between the
    // first and last index touched, so checking that span once bounds them all.
    void run(const GlobalTensor<TC>& c, int r0, int c0, int rows, int cols, bool atomic, const char* api) {
        need(api);
        const uint64_t r1 = (uint64_t)(r0 + rows - 1), c1 = (uint64_t)(c0 + cols - 1), k1 = (uint64_t)(k_ - 1);
        const uint64_t a0 = transA_ ? (uint64_t)r0 : (uint64_t)r0 * orgKa_;
        const uint64_t aN = (transA_ ? k1 * orgM_ + r1 : r1 * orgKa_ + k1) - a0 + 1;
        const uint64_t b0 = transB_ ? (uint64_t)c0 * orgKb_ : (uint64_t)c0;
        const uint64_t bN = (transB_ ? c1 * orgKb_ + k1 : k1 * orgN_ + c1) - b0 + 1;
        const TA* pa = ember_emu::gm(a_[a0], aN, api, ember_emu::Use::READ) - a0;
        const TB* pb = ember_emu::gm(b_[b0], bN, api, ember_emu::Use::READ) - b0;
        const TBias* bias = hasBias_ ? ember_emu::gm(bias_[(uint64_t)c0], (uint64_t)cols, api,
                                                     ember_emu::Use::READ) : nullptr;
        std::vector<float> acc((size_t)cols);
        for (int i = r0; i < r0 + rows; ++i) {
            for (int j = 0; j < cols; ++j) acc[j] = bias ? (float)bias[j] : 0.0f;
            for (int k = 0; k < k_; ++k) {
                const float a = (float)pa[transA_ ? (uint64_t)k * orgM_ + i : (uint64_t)i * orgKa_ + k];
                for (int j = 0; j < cols; ++j)
                    acc[j] += a * (float)pb[transB_ ? (uint64_t)(c0 + j) * orgKb_ + k : (uint64_t)k * orgN_ + c0 + j];
            }
            TC* out = ember_emu::gm(c[(uint64_t)i * orgN_ + c0], (uint64_t)cols, api, ember_emu::Use::WRITE, atomic);
            for (int j = 0; j < cols; ++j) out[j] = atomic ? (TC)((float)out[j] + acc[j]) : (TC)acc[j];
        }
    }
};

template <class PIPE, class WS>
inline void ember_regist(PIPE*, WS) {}
template <class PIPE, class WS, class MM, class... REST>
inline void ember_regist(PIPE* pipe, WS ws, MM& mm, const TCubeTiling* tiling, REST&&... rest) {
    mm.Init(tiling, pipe);
    ember_regist(pipe, ws, rest...);
}

}  // namespace AscendC

#define REGIST_MATMUL_OBJ(pipe, workspace, ...) ::AscendC::ember_regist(pipe, workspace, __VA_ARGS__)

namespace matmul {
using AscendC::Matmul;
using AscendC::MatmulType;
}  // namespace matmul
