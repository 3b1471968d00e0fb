// LocalTensor (a checked view of a UB buffer) and GlobalTensor (a checked view of a registered GM buffer),
// with the access checks every API goes through (ascendc.md §7.2 item 3, §7.3 b/d/e/g).
#pragma once
#include "ember_runtime.h"

namespace AscendC {

template <class T>
class LocalTensor {
public:
    int32_t id_ = -1;    // BufRec index in the block context
    uint32_t gen_ = 0;   // the buffer's generation when this view was made
    uint32_t off_ = 0;   // byte offset in the UB arena
    uint32_t size_ = 0;  // elements

    LocalTensor operator[](uint32_t offset) const {
        if (offset > size_)
            ember_emu::fail("local-bounds", "LocalTensor<%s>[%u] is past the end of a view of %u elements",
                            ember_emu::type_name<T>(), offset, size_);
        LocalTensor v = *this;
        v.off_ += offset * (uint32_t)sizeof(T);
        v.size_ -= offset;
        return v;
    }
    T GetValue(uint32_t i) const;
    void SetValue(uint32_t i, T value) const;
    uint32_t GetSize() const { return size_; }
    uint32_t GetLength() const { return size_ * (uint32_t)sizeof(T); }
    void SetSize(uint32_t n);
    T* GetPhyAddr() const { return (T*)(ember_emu::ctx().ub + off_); }
    T* GetPhyAddr(uint32_t offset) const { return GetPhyAddr() + offset; }
    TPosition GetPosition() const;
    template <class U>
    LocalTensor<U> ReinterpretCast() const {
        LocalTensor<U> v;
        v.id_ = id_;
        v.gen_ = gen_;
        v.off_ = off_;
        v.size_ = (uint32_t)((uint64_t)size_ * sizeof(T) / sizeof(U));
        return v;
    }
};

template <class T>
class GlobalTensor {
public:
    T* ptr_ = nullptr;
    T* lo_ = nullptr;  // SetGlobalBuffer's range: every access must stay inside [lo_, hi_)
    T* hi_ = nullptr;
    int32_t gm_ = -1;  // registered GM buffer; kEmptyGm for a zero-sized view (any address, no access)

    void SetGlobalBuffer(T* p, uint64_t size);
    void SetGlobalBuffer(T* p);
    GlobalTensor operator[](uint64_t offset) const {
        GlobalTensor v = *this;
        v.ptr_ = ptr_ + offset;
        return v;
    }
    T GetValue(uint64_t i) const;
    void SetValue(uint64_t i, T value) const;
    uint64_t GetSize() const { return ptr_ <= hi_ ? (uint64_t)(hi_ - ptr_) : 0; }
    T* GetPhyAddr() const { return ptr_; }
    T* GetPhyAddr(uint64_t offset) const { return ptr_ + offset; }
};

}  // namespace AscendC

namespace ember_emu {

enum class Use { READ, WRITE };

// The HardEvent that must separate a write on pipe w from an access on pipe p; MAX where the compiler's auto-sync
// already orders them (V<->S, V->V; ascendc.md §2.3).
inline AscendC::HardEvent sync_event(Pipe w, Pipe p) {
    using E = AscendC::HardEvent;
    if (w == Pipe::MTE2)
        return p == Pipe::V ? E::MTE2_V : p == Pipe::S ? E::MTE2_S : p == Pipe::MTE3 ? E::MTE2_MTE3 : E::MAX;
    if (w == Pipe::V) return p == Pipe::MTE3 ? E::V_MTE3 : p == Pipe::MTE2 ? E::V_MTE2 : E::MAX;
    if (w == Pipe::S) return p == Pipe::MTE3 ? E::S_MTE3 : p == Pipe::MTE2 ? E::S_MTE2 : E::MAX;
    return E::MAX;
}

inline const char* pipe_name(Pipe p) {
    static const char* names[] = {"none", "S (scalar)", "V (vector)", "MTE2 (GM->UB copy)", "MTE3 (UB->GM copy)"};
    return names[(int)p];
}

// Manual-sync hazard on TBuf bytes [lo, hi) (ascendc.md §7.3 g): the last overlapping write on another pipe must
// be followed by a WaitFlag of the matching HardEvent (or PipeBarrier<PIPE_ALL>); two overlapping GM->UB writes
// need PipeBarrier<PIPE_MTE2>. Write-after-read hazards are not tracked.
inline void sync_hazard(BufRec& b, uint32_t lo, uint32_t hi, bool write, const char* api, const char* operand) {
    Ctx& c = ctx();
    const Pipe p = current_pipe();
    if (b.wpipe != Pipe::NONE && lo < b.whi && b.wlo < hi && c.barrier[PIPE_ALL] <= b.wtick) {
        if (b.wpipe == p) {
            if (p == Pipe::MTE2 && write && c.barrier[PIPE_MTE2] <= b.wtick)
                fail("sync-hazard", "%s: %s overlaps TBuf bytes an earlier GM->UB copy wrote, with no "
                     "PipeBarrier<PIPE_MTE2> in between", api, operand);
        } else {
            const AscendC::HardEvent e = sync_event(b.wpipe, p);
            if (e != AscendC::HardEvent::MAX && c.waited[(int)e] <= b.wtick)
                fail("sync-hazard", "%s: %s on pipe %s %s TBuf bytes that pipe %s wrote, with no "
                     "SetFlag/WaitFlag<HardEvent::%s> in between (TBufs are outside the queue protocol)", api,
                     operand, pipe_name(p), write ? "overwrites" : "reads", pipe_name(b.wpipe), event_name(e));
        }
    }
    if (write) {
        b.wpipe = p;
        b.wtick = ++c.tick;
        b.wlo = lo;
        b.whi = hi;
    }
}

// Checks that an API may touch `count` elements of `elem` bytes from byte `off` of buffer `id` (state,
// generation, bounds, 32-byte alignment). Not a template, so each module compiles it once.
inline uint8_t* ub_check(int32_t id, uint32_t gen, uint32_t off, uint32_t size, uint64_t count, size_t elem,
                         const char* tname, const char* api, const char* operand, bool align) {
    Ctx& c = ctx();
    if (id < 0 || id >= (int32_t)c.bufs.size())
        fail("use-invalid-tensor", "%s: %s is a LocalTensor that no AllocTensor/DeQue/Get produced", api, operand);
    const BufRec& b = c.bufs[id];
    if (gen != b.gen || b.state == Slot::FREE)
        fail("use-after-free", "%s: %s was freed by FreeTensor (use after FreeTensor)", api, operand);
    if (b.state == Slot::ENQUE)
        fail("use-before-deque", "%s: %s is EnQue'd and not yet DeQue'd (in flight)", api, operand);
    if (count > size || off + count * elem > (uint64_t)b.start + b.len)
        fail("local-bounds", "%s: %s needs %llu elements of %s but the view has %u (buffer of %u bytes)", api,
             operand, (unsigned long long)count, tname, size, b.len);
    if (align && off % 32 != 0)
        fail("local-align", "%s: %s starts at UB byte %u, not 32-byte aligned", api, operand, off);
    if (b.state == Slot::TBUF && count)  // operands named "dst..." are the ones an API writes
        sync_hazard(c.bufs[id], off, (uint32_t)(off + count * elem), operand[0] == 'd', api, operand);
    return c.ub + off;
}

template <class T>
T* ub(const AscendC::LocalTensor<T>& t, uint64_t count, const char* api, const char* operand, bool align = true) {
    return (T*)ub_check(t.id_, t.gen_, t.off_, t.size_, count, sizeof(T), type_name<T>(), api, operand, align);
}

inline const BufRec& rec(int32_t id) { return ctx().bufs[id]; }

// Element operands may alias only completely (ascendc.md §3, "operand overlap").
template <class T, class U>
void no_partial_overlap(const AscendC::LocalTensor<T>& a, uint64_t na, const AscendC::LocalTensor<U>& b,
                        uint64_t nb, const char* api) {
    uint64_t a0 = a.off_, a1 = a0 + na * sizeof(T), b0 = b.off_, b1 = b0 + nb * sizeof(U);
    if (a0 < b1 && b0 < a1 && !(a0 == b0 && a1 == b1))
        fail("operand-overlap", "%s: dst and a source partially overlap in UB (bytes %llu..%llu vs %llu..%llu)",
             api, (unsigned long long)a0, (unsigned long long)a1, (unsigned long long)b0, (unsigned long long)b1);
}

constexpr int32_t kEmptyGm = -2;

// GM access of `count` elements at p within [lo, hi) (bytes) of registered buffer `idx`; records reads/writes.
inline void gm_check(int32_t idx, const uint8_t* p, const uint8_t* lo, const uint8_t* hi, uint64_t count,
                     size_t elem, const char* tname, const char* api, Use use, bool atomic) {
    if (idx == kEmptyGm) {
        if (count == 0) return;
        fail("gm-bounds", "%s: GM access of %llu %s elements through a GlobalTensor set up with size 0", api,
             (unsigned long long)count, tname);
    }
    if (idx < 0) fail("gm-unset", "%s: GlobalTensor<%s> used before SetGlobalBuffer", api, tname);
    if (p < lo || p + count * elem > hi)
        fail("gm-bounds", "%s: GM access of %llu %s elements at offset %lld of '%s' is outside its "
             "SetGlobalBuffer range of %lld elements", api, (unsigned long long)count, tname,
             (long long)((p - lo) / (ptrdiff_t)elem), ctx().gm[idx].name.c_str(),
             (long long)((hi - lo) / (ptrdiff_t)elem));
    if ((uintptr_t)p % elem != 0) fail("gm-align", "%s: GM address is not aligned to sizeof(%s)", api, tname);
    if (use == Use::WRITE) gm_mark_write(idx, p, count * elem, atomic, api);
}

template <class T>
T* gm(const AscendC::GlobalTensor<T>& g, uint64_t count, const char* api, Use use, bool atomic = false) {
    gm_check(g.gm_, (const uint8_t*)g.ptr_, (const uint8_t*)g.lo_, (const uint8_t*)g.hi_, count, sizeof(T),
             type_name<T>(), api, use, atomic);
    return g.ptr_;
}

}  // namespace ember_emu

namespace AscendC {

template <class T>
T LocalTensor<T>::GetValue(uint32_t i) const {
    ember_emu::PipeScope scalar(ember_emu::Pipe::S);
    return ember_emu::ub(operator[](i), 1, "LocalTensor::GetValue", "src", false)[0];
}
template <class T>
void LocalTensor<T>::SetValue(uint32_t i, T value) const {
    ember_emu::PipeScope scalar(ember_emu::Pipe::S);
    ember_emu::ub(operator[](i), 1, "LocalTensor::SetValue", "dst", false)[0] = value;
}
template <class T>
void LocalTensor<T>::SetSize(uint32_t n) {
    const ember_emu::BufRec& b = ember_emu::rec(id_);
    if (off_ + (uint64_t)n * sizeof(T) > (uint64_t)b.start + b.len)
        ember_emu::fail("local-bounds", "SetSize(%u) of a LocalTensor<%s> runs past its %u-byte buffer", n,
                        ember_emu::type_name<T>(), b.len);
    size_ = n;
}
template <class T>
TPosition LocalTensor<T>::GetPosition() const { return ember_emu::rec(id_).pos; }

template <class T>
void GlobalTensor<T>::SetGlobalBuffer(T* p, uint64_t size) {
    ptr_ = lo_ = hi_ = p;
    if (size == 0) {  // e.g. a core with no work: its address may lie past the buffer
        gm_ = ember_emu::kEmptyGm;
        return;
    }
    gm_ = ember_emu::find_gm(p, size * sizeof(T));
    if (gm_ < 0) {
        int any = ember_emu::find_gm(p, sizeof(T));
        if (any >= 0)
            ember_emu::fail("gm-bounds", "SetGlobalBuffer of %llu %s elements at byte %lld of '%s' runs past "
                            "its allocation of %llu bytes", (unsigned long long)size, ember_emu::type_name<T>(),
                            (long long)((uint8_t*)p - ember_emu::ctx().gm[any].lo),
                            ember_emu::ctx().gm[any].name.c_str(),
                            (unsigned long long)ember_emu::ctx().gm[any].bytes);
        ember_emu::fail("gm-bounds", "SetGlobalBuffer on an address that is in no GM buffer of this launch");
    }
    ptr_ = lo_ = p;
    hi_ = p + size;
}
template <class T>
void GlobalTensor<T>::SetGlobalBuffer(T* p) {
    gm_ = ember_emu::find_gm(p, 0);
    if (gm_ < 0) ember_emu::fail("gm-bounds", "SetGlobalBuffer on an address that is in no GM buffer");
    const ember_emu::GmRange& r = ember_emu::ctx().gm[gm_];
    ptr_ = lo_ = p;
    hi_ = p + (uint64_t)(r.lo + r.bytes - (uint8_t*)p) / sizeof(T);
}
template <class T>
T GlobalTensor<T>::GetValue(uint64_t i) const {
    return ember_emu::gm(operator[](i), 1, "GlobalTensor::GetValue", ember_emu::Use::READ)[0];
}
template <class T>
void GlobalTensor<T>::SetValue(uint64_t i, T value) const {
    ember_emu::gm(operator[](i), 1, "GlobalTensor::SetValue", ember_emu::Use::WRITE)[0] = value;
}

}  // namespace AscendC
