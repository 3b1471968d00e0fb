// TPipe / TQue / TBuf with UB capacity accounting and the queue state machine FREE->OCCUPIED->ENQUE->DEQUE->FREE
// (ascendc.md §2.3, §7.2 item 3, §7.3 a/c).
#pragma once
#include "ember_tensor.h"

namespace AscendC {

template <TPosition POS, int32_t DEPTH, auto MASK = 0>
class TQue;
template <TPosition POS>
class TBuf;

class TPipe {
public:
    TPipe() {
        ember_emu::Ctx& c = ember_emu::ctx();
        if (c.pipe_alive) ember_emu::fail("pipe", "a second TPipe was created while another is alive");
        c.pipe_alive = true;
        c.ub_used = 0;
    }
    ~TPipe() { ember_emu::ctx().pipe_alive = false; }
    TPipe(const TPipe&) = delete;
    TPipe& operator=(const TPipe&) = delete;

    template <class Q>
    bool InitBuffer(Q& que, uint8_t num, uint32_t len) {
        que.init(alloc(num, len, que.position(), ember_emu::ctx().next_que++, "InitBuffer(TQue)"), num);
        return true;
    }
    template <TPosition P>
    bool InitBuffer(TBuf<P>& buf, uint32_t len) {
        buf.init(alloc(1, len, P, -1, "InitBuffer(TBuf)"));
        return true;
    }
    void Reset() {
        ember_emu::Ctx& c = ember_emu::ctx();
        for (const ember_emu::BufRec& b : c.bufs)
            if (b.state != ember_emu::Slot::FREE && b.state != ember_emu::Slot::TBUF)
                ember_emu::fail("queue-leak", "TPipe::Reset while a queue buffer is still %s",
                                ember_emu::slot_name(b.state));
        c.bufs.clear();
        c.ub_used = 0;
    }
    void Destroy() { Reset(); }

private:
    // Carves `num` buffers of align32(len) bytes from UB; returns the first record index.
    static int32_t alloc(int num, uint32_t len, TPosition pos, int32_t que, const char* api) {
        ember_emu::Ctx& c = ember_emu::ctx();
        if (num < 1 || num > 64) ember_emu::fail("buffer-count", "%s: num = %d is outside [1, 64]", api, num);
        if (len == 0) ember_emu::fail("ub-capacity", "%s: buffer length is 0", api);
        if (len % 32 != 0) {
            char w[160];
            snprintf(w, sizeof w, "warning: %s length %u is not a multiple of 32 bytes; it is rounded up", api, len);
            c.warn(w);
        }
        if (c.bufs.size() + (size_t)num > 64)
            ember_emu::fail("buffer-count", "%s: %zu buffers in one TPipe; at most 64 are allowed", api,
                            c.bufs.size() + (size_t)num);
        const uint64_t alen = ((uint64_t)len + 31) / 32 * 32;
        const uint64_t need = c.ub_used + alen * (uint64_t)num;
        if (need > EMBER_ASCEND_UB_BYTES)
            ember_emu::fail("ub-capacity", "%s: %d x %llu bytes would use %llu bytes of UB; arch %d has %d",
                            api, num, (unsigned long long)alen, (unsigned long long)need, EMBER_ASCEND_ARCH,
                            EMBER_ASCEND_UB_BYTES);
        if (EMBER_ASCEND_ARCH == 2201 && need > ember_emu::kTmpUbOffset)
            c.warn("warning: UB use above 184 KB eats into the TMP_UB scratch area some APIs use");
        const int32_t first = (int32_t)c.bufs.size();
        for (int i = 0; i < num; ++i) {
            ember_emu::Slot s = que < 0 ? ember_emu::Slot::TBUF : ember_emu::Slot::FREE;
            c.bufs.push_back({(uint32_t)(c.ub_used + alen * i), (uint32_t)alen, s, pos, que, 0});
        }
        c.ub_used = (uint32_t)need;
        if (need > c.stats[ember_emu::STAT_UB_PEAK]) c.stats[ember_emu::STAT_UB_PEAK] = need;
        return first;
    }
};

template <TPosition POS, int32_t DEPTH, auto MASK>
class TQue {
public:
    static constexpr TPosition position() { return POS; }
    void init(int32_t first, int num) {
        if (first_ >= 0) ember_emu::fail("queue-init", "InitBuffer called twice for the same TQue");
        first_ = first;
        num_ = num;
        id_ = ember_emu::rec(first).que;
    }

    template <class T>
    LocalTensor<T> AllocTensor() {
        ember_emu::Ctx& c = need("AllocTensor");
        int live = 0;
        for (const ember_emu::BufRec& b : c.bufs)
            live += b.que >= 0 && b.pos == POS && b.state != ember_emu::Slot::FREE;
        for (int k = 0; k < num_; ++k) {
            const int32_t id = first_ + (next_ + k) % num_;
            ember_emu::BufRec& b = c.bufs[id];
            if (b.state != ember_emu::Slot::FREE) continue;
            if (live + 1 > ember_emu::kMaxLivePerPosition)
                ember_emu::fail("position-limit", "AllocTensor: more than %d buffers of one TPosition allocated "
                                "at once (max buffer number in same queue position)", ember_emu::kMaxLivePerPosition);
            next_ = (next_ + k + 1) % num_;
            b.state = ember_emu::Slot::OCCUPIED;
            std::memset(c.ub + b.start, 0xff, b.len);  // fresh buffers hold garbage
            return view<T>(id);
        }
        ember_emu::fail("alloc-no-free-buffer", "AllocTensor: all %d buffers of the queue are in use (the NPU "
                        "would hang)", num_);
    }

    template <class T>
    bool EnQue(const LocalTensor<T>& t) {
        need("EnQue");
        ember_emu::BufRec& b = own(t, "EnQue");
        if (b.state != ember_emu::Slot::OCCUPIED && b.state != ember_emu::Slot::DEQUE)
            ember_emu::fail(b.state == ember_emu::Slot::ENQUE ? "enque-twice" : "use-after-free",
                            "EnQue of a tensor whose buffer is %s", ember_emu::slot_name(b.state));
        if (count_ >= DEPTH)
            ember_emu::fail("enque-depth", "EnQue beyond the queue depth %d (queue depth misuse)", (int)DEPTH);
        b.state = ember_emu::Slot::ENQUE;
        fifo_[(head_ + count_) % 64] = t.id_;
        ++count_;
        return true;
    }

    template <class T>
    LocalTensor<T> DeQue() {
        ember_emu::Ctx& c = need("DeQue");
        if (count_ == 0) ember_emu::fail("deque-empty", "DeQue on an empty queue");
        const int32_t id = fifo_[head_];
        head_ = (head_ + 1) % 64;
        --count_;
        ember_emu::BufRec& b = c.bufs[id];
        if (b.state != ember_emu::Slot::ENQUE)
            ember_emu::fail("deque-state", "DeQue of a buffer in state %s", ember_emu::slot_name(b.state));
        b.state = ember_emu::Slot::DEQUE;
        return view<T>(id);
    }

    template <class T>
    void FreeTensor(LocalTensor<T>& t) {
        need("FreeTensor");
        ember_emu::BufRec& b = own(t, "FreeTensor");
        if (b.state == ember_emu::Slot::FREE || t.gen_ != b.gen)
            ember_emu::fail("free-twice", "FreeTensor of a buffer that is already FREE");
        if (b.state == ember_emu::Slot::ENQUE)
            ember_emu::fail("free-enqueued", "FreeTensor of a tensor that is EnQue'd and not DeQue'd");
        b.state = ember_emu::Slot::FREE;
        ++b.gen;
    }

    bool HasTensorInQue() const { return count_ > 0; }
    int32_t GetTensorCountInQue() const { return count_; }
    bool VacantInQue() const { return count_ < DEPTH; }
    bool HasIdleBuffer() const {
        for (int k = 0; k < num_; ++k)
            if (ember_emu::rec(first_ + k).state == ember_emu::Slot::FREE) return true;
        return false;
    }

private:
    int32_t first_ = -1, num_ = 0, id_ = -1, next_ = 0;
    int32_t fifo_[64] = {}, head_ = 0, count_ = 0;

    ember_emu::Ctx& need(const char* api) {
        if (first_ < 0) ember_emu::fail("queue-init", "%s on a TQue that no InitBuffer set up", api);
        return ember_emu::ctx();
    }
    template <class T>
    ember_emu::BufRec& own(const LocalTensor<T>& t, const char* api) {
        ember_emu::Ctx& c = ember_emu::ctx();
        if (t.id_ < 0 || t.id_ >= (int32_t)c.bufs.size())
            ember_emu::fail("use-invalid-tensor", "%s of a LocalTensor that no AllocTensor produced", api);
        ember_emu::BufRec& b = c.bufs[t.id_];
        if (b.que != id_)
            ember_emu::fail("foreign-tensor", "%s of a tensor that belongs to another queue or a TBuf", api);
        if (t.gen_ != b.gen) ember_emu::fail("use-after-free", "%s of a tensor already freed by FreeTensor", api);
        return b;
    }
    template <class T>
    static LocalTensor<T> view(int32_t id) {
        const ember_emu::BufRec& b = ember_emu::rec(id);
        LocalTensor<T> t;
        t.id_ = id;
        t.gen_ = b.gen;
        t.off_ = b.start;
        t.size_ = b.len / (uint32_t)sizeof(T);
        return t;
    }
};

template <TPosition POS = TPosition::VECCALC>
class TBuf {
public:
    void init(int32_t id) {
        if (id_ >= 0) ember_emu::fail("queue-init", "InitBuffer called twice for the same TBuf");
        id_ = id;
    }
    template <class T>
    LocalTensor<T> Get() {
        check();
        return Get<T>(ember_emu::rec(id_).len / (uint32_t)sizeof(T));
    }
    template <class T>
    LocalTensor<T> Get(uint32_t len) {
        check();
        const ember_emu::BufRec& b = ember_emu::rec(id_);
        if ((uint64_t)len * sizeof(T) > b.len)
            ember_emu::fail("local-bounds", "TBuf::Get<%s>(%u) exceeds the %u-byte buffer",
                            ember_emu::type_name<T>(), len, b.len);
        LocalTensor<T> t;
        t.id_ = id_;
        t.gen_ = b.gen;
        t.off_ = b.start;
        t.size_ = len;
        return t;
    }

private:
    int32_t id_ = -1;
    void check() const {
        if (id_ < 0) ember_emu::fail("queue-init", "TBuf::Get on a TBuf that no InitBuffer set up");
    }
};

}  // namespace AscendC
