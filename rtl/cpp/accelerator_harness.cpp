// SPDX-License-Identifier: BSD-3-Clause
// Verilator C++ harness of the accelerator top (rtl/accelerator.py): the board around it.
//
// - DDR: one AXI4 slave per DDR master port of the top (listed by the generated
//   harness_ports.h), over one byte array. Per port: first-beat read latency (cycles from the
//   AR handshake to the first possible R handshake), write-response latency (cycles from the
//   burst's last W handshake, or its AW if that came later, to the first possible B
//   handshake) and outstanding-burst limits (arready / awready low while reached). All ports
//   share one bandwidth cap: a credit bucket that gains `rate` micro-bytes a cycle up to
//   `bucket` bytes; an R or W beat moves only when it can take its 16 bytes of credit
//   (ports in order, reads before writes). Faults: reads or writes whose beat address lies in
//   a range answer SLVERR / DECERR (writes there are dropped), or are stalled for extra cycles.
// - Host: an AXI4-Lite master on `ctrl` for register reads and writes.
// - A cycle: the DUT is settled (its state and this cycle's inputs); take the handshakes
//   (valid & ready as the DUT sees them), update the models, drive every input of the next
//   cycle from the models' state, rising edge. The models' outputs depend only on their
//   state, so the inputs of the next cycle are known before its edge.
// - The Verilated top is rtl/harness.py's wrapper of the DUT: the DUT's inputs come from
//   registers the wrapper loads from its own inputs at the rising edge (`harness_latch`
//   loads them too, between edges). So the DUT's logic never depends combinationally on a
//   top-level input, Verilator's input-combinational region (which it runs on every
//   eval(), inputs changed or not) is empty, and one evaluation a cycle, at the rising edge,
//   computes the new state and settles it with the next cycle's inputs. Whatever changes
//   the inputs between cycles (an AXI-Lite access starting, rst, a DDR load or a DDR model
//   setting) calls relatch(): the DUT sees exactly what it would see without the wrapper.
//
// Python binds the extern "C" functions below with ctypes (rtl/harness.py); no Python runs
// per cycle.

#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "harness_ports.h"
#include "verilated.h"
#include HARNESS_TOP_HEADER
#if HARNESS_TRACE
#include "verilated_fst_c.h"
#endif

namespace {

constexpr int BEAT = 16;                  // bytes per 128-bit beat
constexpr int64_t MICRO = 1000000;        // credit unit: micro-bytes
constexpr int RESP_OKAY = 0;

struct Fault {
    bool write;
    uint64_t lo, hi;                      // byte range [lo, hi)
    int resp;                             // AXI response (0: none, only a stall)
    uint64_t stall;                       // extra cycles before the burst's first beat / B
};

struct ReadBurst {
    uint64_t addr;
    uint32_t beats;
    uint64_t ready;                       // first cycle its next beat may be handed over
};

struct WriteBurst {
    uint64_t addr;
    uint32_t beats, done;
    int resp;
    uint64_t stall;
    uint64_t aw_cycle;
};

struct WriteBeat {
    uint32_t data[4];
    uint16_t strb;
    uint64_t cycle;
};

struct Response {
    uint64_t ready;
    int resp;
};

// Pointers to one DDR master port's signals in the Verilated model.
struct PortPins {
    uint32_t *araddr, *awaddr;
    uint8_t *arlen, *arvalid, *arready, *rready, *rvalid, *rlast, *rresp;
    uint8_t *awlen, *awvalid, *awready, *wvalid, *wready, *wlast, *bready, *bvalid, *bresp;
    uint16_t *wstrb;
    uint32_t *rdata, *wdata;              // 4 words, least significant first
};

struct Port {
    PortPins pin;
    uint32_t read_latency = 2, write_latency = 2;
    uint32_t max_reads = 1u << 30, max_writes = 1u << 30;
    std::deque<ReadBurst> reads;
    std::deque<WriteBurst> writes;        // accepted AWs whose data or B is still due
    std::deque<WriteBeat> wbeats;         // W beats not yet matched to an AW
    std::deque<Response> bresps;
    uint32_t writes_open = 0;             // AWs accepted and not yet answered by B
    // this cycle
    bool r_offer = false, w_offer = false;
    uint64_t read_beats = 0, write_beats = 0;
};

}  // namespace

struct Harness {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<HARNESS_TOP> top;
#if HARNESS_TRACE
    std::unique_ptr<VerilatedFstC> trace;
#endif
    std::vector<uint8_t> ddr;
    std::vector<Port> ports;
    std::vector<Fault> faults;
    uint64_t cycle = 0;                   // cycles since the end of reset
    uint64_t ticks = 0;                   // cycles since construction (waveform time)
    int64_t rate = 0;                     // micro-bytes per cycle; 0: no cap
    int64_t bucket = 0, credit = 0;
    int64_t granted = 0;                  // credit promised to this cycle's offers
    // AXI-Lite master state
    bool lite_busy = false;

    int fault_resp(bool write, uint64_t addr) const {
        for (const Fault &f : faults)
            if (f.write == write && f.resp && addr >= f.lo && addr < f.hi) return f.resp;
        return RESP_OKAY;
    }
    uint64_t fault_stall(bool write, uint64_t addr, uint64_t bytes) const {
        uint64_t extra = 0;
        for (const Fault &f : faults)
            if (f.write == write && f.stall && addr < f.hi && addr + bytes > f.lo)
                extra += f.stall;
        return extra;
    }
    bool take_credit() {
        if (!rate) return true;
        if (credit - granted < BEAT * MICRO) return false;
        granted += BEAT * MICRO;
        return true;
    }

    void drive() {
        granted = 0;
        for (Port &p : ports) {
            const PortPins &q = p.pin;
            *q.arready = p.reads.size() < p.max_reads;
            *q.awready = p.writes_open < p.max_writes;
            p.r_offer = !p.reads.empty() && p.reads.front().ready <= cycle && take_credit();
            *q.rvalid = p.r_offer;
            if (p.r_offer) {
                const ReadBurst &b = p.reads.front();
                int resp = fault_resp(false, b.addr);
                if (resp == RESP_OKAY && b.addr + BEAT <= ddr.size())
                    std::memcpy(q.rdata, &ddr[b.addr], BEAT);
                else
                    std::memset(q.rdata, 0, BEAT);
                if (resp == RESP_OKAY && b.addr + BEAT > ddr.size()) resp = 3;   // DECERR
                *q.rresp = resp;
                *q.rlast = b.beats == 1;
            } else {
                std::memset(q.rdata, 0, BEAT);
                *q.rresp = 0;
                *q.rlast = 0;
            }
            p.w_offer = take_credit();
            *q.wready = p.w_offer;
            bool b_offer = !p.bresps.empty() && p.bresps.front().ready <= cycle;
            *q.bvalid = b_offer;
            *q.bresp = b_offer ? p.bresps.front().resp : 0;
        }
    }

    void write_beat(WriteBurst &b, const WriteBeat &w) {
        uint64_t addr = b.addr + uint64_t(b.done) * BEAT;
        int resp = fault_resp(true, addr);
        if (resp == RESP_OKAY && addr + BEAT > ddr.size()) resp = 3;
        if (resp != RESP_OKAY) {
            if (b.resp == RESP_OKAY) b.resp = resp;
        } else {
            const uint8_t *bytes = reinterpret_cast<const uint8_t *>(w.data);
            for (int i = 0; i < BEAT; ++i)
                if (w.strb >> i & 1) ddr[addr + i] = bytes[i];
        }
        ++b.done;
    }

    // handshakes seen in this cycle (before the edge); applied after it
    void update() {
        int64_t used = 0;
        for (Port &p : ports) {
            PortPins &q = p.pin;
            bool ar = *q.arvalid && *q.arready;
            bool r = p.r_offer && *q.rready;
            bool aw = *q.awvalid && *q.awready;
            bool w = *q.wvalid && p.w_offer;
            bool b = *q.bvalid && *q.bready;
            // captured before the edge changes the DUT's outputs
            uint64_t araddr = *q.araddr, awaddr = *q.awaddr;
            uint32_t arbeats = uint32_t(*q.arlen) + 1, awbeats = uint32_t(*q.awlen) + 1;
            WriteBeat beat{};
            if (w) {
                std::memcpy(beat.data, q.wdata, BEAT);
                beat.strb = *q.wstrb;
                beat.cycle = cycle;
            }
            if (r) {
                ReadBurst &front = p.reads.front();
                front.addr += BEAT;
                if (--front.beats == 0) p.reads.pop_front();
                used += BEAT * MICRO;
                ++p.read_beats;
            }
            if (ar) {
                uint64_t bytes = uint64_t(arbeats) * BEAT;
                p.reads.push_back({araddr, arbeats,
                                   cycle + p.read_latency + fault_stall(false, araddr, bytes)});
            }
            if (b) {
                p.bresps.pop_front();
                --p.writes_open;
            }
            if (aw) {
                uint64_t bytes = uint64_t(awbeats) * BEAT;
                p.writes.push_back({awaddr, awbeats, 0, RESP_OKAY,
                                    fault_stall(true, awaddr, bytes), cycle});
                ++p.writes_open;
            }
            if (w) {
                p.wbeats.push_back(beat);
                used += BEAT * MICRO;
                ++p.write_beats;
            }
            // match W beats to their bursts, in order
            while (!p.writes.empty() && !p.wbeats.empty()) {
                WriteBurst &front = p.writes.front();
                WriteBeat next = p.wbeats.front();
                p.wbeats.pop_front();
                write_beat(front, next);
                if (front.done == front.beats) {
                    uint64_t end = next.cycle > front.aw_cycle ? next.cycle : front.aw_cycle;
                    p.bresps.push_back({end + p.write_latency + front.stall, front.resp});
                    p.writes.pop_front();
                }
            }
        }
        if (rate) {
            credit += rate - used;
            if (credit > bucket) credit = bucket;
        }
    }

    // the DUT's inputs of this cycle changed between edges: drive and load them again
    void relatch() {
        drive();
        lite_drive();
        top->harness_latch = 1;
        top->eval();
        top->harness_latch = 0;
        top->eval();
    }

    void tick() {
        lite_sample();
        update();
        ++cycle;
        ++ticks;
        lite_apply();
        drive();
        top->clk = 1;
        top->eval();
#if HARNESS_TRACE
        if (trace) trace->dump(2 * ticks - 1);
#endif
        top->clk = 0;
        top->eval();        // no edge: only so that the next rising edge is one
#if HARNESS_TRACE
        if (trace) trace->dump(2 * ticks);
#endif
    }

    // ---- AXI-Lite master: one transaction at a time, driven across cycles ----
    enum LiteState { LITE_IDLE, LITE_AW_W, LITE_B, LITE_AR, LITE_R };
    LiteState lite = LITE_IDLE;
    bool lite_aw_done = false, lite_w_done = false;
    bool hs_aw = false, hs_w = false, hs_b = false, hs_ar = false, hs_r = false;
    uint32_t lite_rdata = 0;
    int lite_resp = 0;

    void lite_drive() {
        top->HARNESS_CTRL(awvalid) = lite == LITE_AW_W && !lite_aw_done;
        top->HARNESS_CTRL(wvalid) = lite == LITE_AW_W && !lite_w_done;
        top->HARNESS_CTRL(bready) = lite == LITE_B;
        top->HARNESS_CTRL(arvalid) = lite == LITE_AR;
        top->HARNESS_CTRL(rready) = lite == LITE_R;
    }
    void lite_sample() {
        hs_aw = top->HARNESS_CTRL(awvalid) && top->HARNESS_CTRL(awready);
        hs_w = top->HARNESS_CTRL(wvalid) && top->HARNESS_CTRL(wready);
        hs_b = top->HARNESS_CTRL(bvalid) && top->HARNESS_CTRL(bready);
        hs_ar = top->HARNESS_CTRL(arvalid) && top->HARNESS_CTRL(arready);
        hs_r = top->HARNESS_CTRL(rvalid) && top->HARNESS_CTRL(rready);
        if (hs_b) lite_resp = top->HARNESS_CTRL(bresp);
        if (hs_r) {
            lite_rdata = top->HARNESS_CTRL(rdata);
            lite_resp = top->HARNESS_CTRL(rresp);
        }
    }
    void lite_apply() {
        switch (lite) {
        case LITE_AW_W:
            lite_aw_done |= hs_aw;
            lite_w_done |= hs_w;
            if (lite_aw_done && lite_w_done) lite = LITE_B;
            break;
        case LITE_B:
            if (hs_b) lite = LITE_IDLE;
            break;
        case LITE_AR:
            if (hs_ar) lite = LITE_R;
            break;
        case LITE_R:
            if (hs_r) lite = LITE_IDLE;
            break;
        default:
            break;
        }
        lite_drive();
    }
    void lite_start_write(uint32_t offset, uint32_t value) {
        top->HARNESS_CTRL(awaddr) = offset;
        top->HARNESS_CTRL(wdata) = value;
        top->HARNESS_CTRL(wstrb) = 0xF;
        lite = LITE_AW_W;
        lite_aw_done = lite_w_done = false;
        relatch();
    }
    void lite_start_read(uint32_t offset) {
        top->HARNESS_CTRL(araddr) = offset;
        lite = LITE_AR;
        relatch();
    }
    bool lite_finish(uint64_t limit) {
        for (uint64_t i = 0; lite != LITE_IDLE; ++i) {
            if (i >= limit) return false;
            tick();
        }
        return true;
    }
};

#define HARNESS_BIND(index, prefix)                                                      \
    do {                                                                                 \
        PortPins &q = h->ports[index].pin;                                               \
        auto *t = h->top.get();                                                          \
        q.araddr = &t->prefix##araddr;                                                   \
        q.arlen = &t->prefix##arlen;                                                     \
        q.arvalid = &t->prefix##arvalid;                                                 \
        q.arready = &t->prefix##arready;                                                 \
        q.rready = &t->prefix##rready;                                                   \
        q.rvalid = &t->prefix##rvalid;                                                   \
        q.rlast = &t->prefix##rlast;                                                     \
        q.rresp = &t->prefix##rresp;                                                     \
        q.rdata = reinterpret_cast<uint32_t *>(&t->prefix##rdata);                       \
        q.awaddr = &t->prefix##awaddr;                                                   \
        q.awlen = &t->prefix##awlen;                                                     \
        q.awvalid = &t->prefix##awvalid;                                                 \
        q.awready = &t->prefix##awready;                                                 \
        q.wvalid = &t->prefix##wvalid;                                                   \
        q.wready = &t->prefix##wready;                                                   \
        q.wlast = &t->prefix##wlast;                                                     \
        q.wstrb = &t->prefix##wstrb;                                                     \
        q.wdata = reinterpret_cast<uint32_t *>(&t->prefix##wdata);                       \
        q.bready = &t->prefix##bready;                                                   \
        q.bvalid = &t->prefix##bvalid;                                                   \
        q.bresp = &t->prefix##bresp;                                                     \
    } while (0);

#define TE_API __attribute__((visibility("default")))

extern "C" {

TE_API Harness *te_new(uint64_t ddr_bytes, const char *fst_path) {
    auto *h = new Harness;
    h->ctx = std::make_unique<VerilatedContext>();
    h->ctx->commandArgs(0, static_cast<const char **>(nullptr));
    h->ctx->randReset(0);
#if HARNESS_TRACE
    if (fst_path && *fst_path) h->ctx->traceEverOn(true);
#endif
    h->top = std::make_unique<HARNESS_TOP>(h->ctx.get(), "top");
#if HARNESS_TRACE
    if (fst_path && *fst_path) {
        h->trace = std::make_unique<VerilatedFstC>();
        h->top->trace(h->trace.get(), 99);
        h->trace->open(fst_path);
    }
#else
    (void)fst_path;
#endif
    h->ddr.assign(ddr_bytes, 0);
    h->ports.resize(HARNESS_PORT_COUNT);
    HARNESS_PORTS(HARNESS_BIND)
    h->top->eval();         // initial values settled: the first relatch() is an edge
    h->top->rst = 1;
    h->relatch();
    for (int i = 0; i < 4; ++i) h->tick();
    h->top->rst = 0;
    h->cycle = 0;
    h->relatch();
    return h;
}

TE_API void te_free(Harness *h) {
#if HARNESS_TRACE
    if (h->trace) h->trace->close();
#endif
    h->top->final();
    delete h;
}

TE_API int te_port_count(Harness *) { return HARNESS_PORT_COUNT; }

TE_API int te_traced(Harness *h) {
#if HARNESS_TRACE
    return h->trace != nullptr;
#else
    (void)h;
    return 0;
#endif
}

TE_API void te_port_config(Harness *h, int port, uint32_t read_latency, uint32_t write_latency,
                    uint32_t max_reads, uint32_t max_writes) {
    Port &p = h->ports[port];
    p.read_latency = read_latency;
    p.write_latency = write_latency;
    p.max_reads = max_reads;
    p.max_writes = max_writes;
    h->relatch();
}

// rate: micro-bytes per cycle (0: no cap); bucket: bytes the bucket holds (starts full)
TE_API void te_bandwidth(Harness *h, int64_t rate, int64_t bucket) {
    h->rate = rate;
    h->bucket = bucket * MICRO;
    h->credit = h->bucket;
    h->relatch();
}

TE_API void te_fault(Harness *h, int write, uint64_t lo, uint64_t hi, int resp, uint64_t stall) {
    h->faults.push_back({write != 0, lo, hi, resp, stall});
    h->relatch();
}

TE_API void te_clear_faults(Harness *h) {
    h->faults.clear();
    h->relatch();
}

TE_API int te_ddr_write(Harness *h, uint64_t addr, const uint8_t *data, uint64_t n) {
    if (addr > h->ddr.size() || n > h->ddr.size() - addr) return -1;
    std::memcpy(&h->ddr[addr], data, n);
    h->relatch();           // a read beat offered next may come from these bytes
    return 0;
}

TE_API int te_ddr_read(Harness *h, uint64_t addr, uint8_t *data, uint64_t n) {
    if (addr > h->ddr.size() || n > h->ddr.size() - addr) return -1;
    std::memcpy(data, &h->ddr[addr], n);
    return 0;
}

// AXI-Lite write; the response code, or -1 if it did not complete within `limit` cycles
TE_API int te_reg_write(Harness *h, uint32_t offset, uint32_t value, uint64_t limit) {
    h->lite_start_write(offset, value);
    return h->lite_finish(limit) ? h->lite_resp : -1;
}

// AXI-Lite read; the value, or -1 on an error response or timeout
TE_API int64_t te_reg_read(Harness *h, uint32_t offset, uint64_t limit) {
    h->lite_start_read(offset);
    if (!h->lite_finish(limit) || h->lite_resp != 0) return -1;
    return h->lite_rdata;
}

// Run `cycles` cycles, or with `status_offset` >= 0 until that register (STATUS) reads DONE
// (bit 1) or ERROR (bit 2) without BUSY (bit 0), polling it every `poll` cycles. Returns
// the cycles run; *status gets the last STATUS read (or 0).
TE_API uint64_t te_run(Harness *h, uint64_t cycles, int64_t status_offset, uint32_t poll,
                uint32_t *status) {
    uint64_t start = h->cycle;
    if (status) *status = 0;
    while (h->cycle - start < cycles) {
        if (status_offset < 0) {
            h->tick();
            continue;
        }
        uint64_t until = h->cycle + poll;
        while (h->cycle < until && h->cycle - start < cycles) h->tick();
        int64_t value = te_reg_read(h, uint32_t(status_offset), 1000);
        if (value < 0) continue;
        if (status) *status = uint32_t(value);
        bool busy = value & 1, done = value & 2, error = value & 4;
        if (done || (error && !busy)) break;
    }
    return h->cycle - start;
}

TE_API uint64_t te_cycle(Harness *h) { return h->cycle; }

TE_API uint64_t te_port_beats(Harness *h, int port, int write) {
    return write ? h->ports[port].write_beats : h->ports[port].read_beats;
}

#if HARNESS_PROFILE
// The instrumented build of a profile-guided one (rtl/harness.py, ``build(train=...)``).
// Defining __llvm_profile_runtime keeps clang's profile runtime from registering its
// write-at-exit (which would leave default.profraw in whatever folder the process ran in):
// the profile is written only here, once the training workload has run.
int __llvm_profile_runtime = 0;
void __llvm_profile_set_filename(const char *name);
int __llvm_profile_write_file(void);

// Write the counters so far to `path` (an LLVM .profraw); 0 on success.
TE_API int te_profile_write(const char *path) {
    __llvm_profile_set_filename(path);
    return __llvm_profile_write_file();
}
#endif

}  // extern "C"
