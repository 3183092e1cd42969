// Virtual board: a Verilated design behind a pseudo-terminal and, optionally, simulated
// XDMA device files.
//
// The design's top module (compiled with --prefix Vboard) has the ports clk, rst, uart_rx
// and uart_tx, optionally idle (built with -DVBOARD_IDLE_PORT=1) and optionally the DMA byte
// streams h2c (valid, ready, 8-bit payload) and c2h (valid, ready, 9-bit payload: data in
// bits 0-7, bit 8 marking the last byte of a packet; built with -DVBOARD_DMA_PORT=1). This
// program opens a pseudo-terminal, prints the slave's path on stdout as
//
//     serial:///dev/pts/N?baud=B
//
// and then runs the clock: bytes a host writes to the slave are sent 8N1 onto uart_rx at
// `divisor` clock cycles per bit, and bytes the design sends on uart_tx are decoded and
// written back to the slave, so a host driver opens the slave like a USB serial adapter.
//
// With --xdma DIR it also makes the named pipes DIR/xdma0_h2c_0 and DIR/xdma0_c2h_0 and
// prints a second line
//
//     pcie://DIR/xdma0
//
// which a host opens like the character devices of the XDMA driver: bytes written to
// xdma0_h2c_0 enter the h2c stream one per cycle as the design takes them; bytes of the c2h
// stream are collected and released to xdma0_c2h_0 a packet at a time, when the byte
// marked last has arrived (as a C2H transfer completes on TLAST). The design's c2h ready is
// high while the harness has room for more. Both pipes are held open here for reading and
// writing, so the board runs whether or not a host has them open and a host never reads end
// of file while it runs.
//
// Options:
//   --divisor N     clock cycles per bit (default: VBOARD_DIVISOR of the build)
//   --baud B        bit rate shown in the URL; a pseudo-terminal ignores it (default 3000000)
//   --stats S       print statistics to stderr every S seconds
//   --trace PATH    record a waveform (only in builds made with --trace-fst or --trace)
//   --link PATH     also make PATH a symbolic link to the slave (removed on exit)
//   --xdma DIR      also serve the DMA streams through named pipes in DIR (made if missing;
//                   the pipes are removed on exit); only for designs with h2c and c2h
//   --watch-stdin   exit when stdin reaches end of file (the parent has gone)
//   --max-cycles N  exit after N clock cycles
//   --no-sleep      never sleep, even when the design reports idle
//   --reset N       cycles rst is held high at start (default 8)
//
// SIGTERM, SIGINT and SIGHUP end the run cleanly; the last line on stderr is always
//     vboard: exit cycles=... seconds=... busy_seconds=... cycles_per_s=... ...
// (with --xdma followed by dma_to_chip=... dma_from_chip=... dma_packets=...) and the exit
// status is 0, or 2 for a usage, pseudo-terminal or pipe error.

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <climits>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "Vboard.h"
#include "verilated.h"

#if VM_TRACE_FST
#include "verilated_fst_c.h"
typedef VerilatedFstC Tracer;
#define VBOARD_TRACE 1
#elif VM_TRACE_VCD
#include "verilated_vcd_c.h"
typedef VerilatedVcdC Tracer;
#define VBOARD_TRACE 1
#else
#define VBOARD_TRACE 0
#endif

#ifndef VBOARD_DIVISOR
#define VBOARD_DIVISOR 4
#endif
#ifndef VBOARD_IDLE_PORT
#define VBOARD_IDLE_PORT 0
#endif
#ifndef VBOARD_DMA_PORT
#define VBOARD_DMA_PORT 0
#endif

namespace {

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Host -> design: 8N1 frames onto uart_rx, back to back while bytes are queued.
struct Serialiser {
    uint32_t divisor;
    std::vector<uint8_t> queue;
    size_t head = 0;
    uint32_t frame = 0;   // start bit, 8 data bits LSB first, stop bit
    int bit = -1;         // bit being sent, -1 when the line idles
    uint32_t timer = 0;

    explicit Serialiser(uint32_t d) : divisor(d) {}
    size_t pending() const { return queue.size() - head; }
    bool idle() const { return bit < 0 && pending() == 0; }

    int line() const { return bit < 0 ? 1 : (frame >> bit) & 1; }

    // Called once per cycle, after the design has seen line() on a rising edge. A queued
    // byte's start bit follows the previous stop bit at once, as from a real adapter.
    void advance(bool enabled) {
        if (bit >= 0 && --timer == 0) {
            timer = divisor;
            if (++bit == 10) bit = -1;
        }
        if (bit < 0 && enabled && pending() != 0) {
            frame = (uint32_t(queue[head++]) << 1) | (1u << 9);
            if (head == queue.size()) {
                queue.clear();
                head = 0;
            }
            bit = 0;
            timer = divisor;
        }
    }

    void push(const uint8_t* data, size_t n) {
        if (head > 0 && head == queue.size()) {
            queue.clear();
            head = 0;
        } else if (head > 65536) {
            queue.erase(queue.begin(), queue.begin() + head);
            head = 0;
        }
        queue.insert(queue.end(), data, data + n);
    }
};

// Design -> host: decodes 8N1 frames on uart_tx, sampling each bit at its middle. The
// design runs on the same clock, so there is no drift to track.
struct Deserialiser {
    uint32_t divisor;
    int bit = -1;         // -1 idle, -2 waiting for the line to go high after a framing error
    uint32_t timer = 0;
    uint32_t shreg = 0;
    uint64_t frame_errors = 0;

    explicit Deserialiser(uint32_t d) : divisor(d) {}
    bool idle() const { return bit == -1; }

    // Returns a byte (0..255) when a frame's stop bit is good, -1 otherwise.
    int step(int line) {
        if (bit == -2) {
            if (line) bit = -1;
            return -1;
        }
        if (bit == -1) {
            if (!line) {
                bit = 0;
                timer = divisor / 2 ? divisor / 2 : 1;
            }
            return -1;
        }
        if (--timer != 0) return -1;
        timer = divisor;
        if (bit == 0) {
            // A glitch shorter than half a bit is not a start bit.
            bit = line ? -1 : 1;
            return -1;
        }
        if (bit <= 8) {
            shreg = (shreg >> 1) | (uint32_t(line & 1) << 7);
            ++bit;
            return -1;
        }
        if (!line) {
            ++frame_errors;
            bit = -2;
            return -1;
        }
        bit = -1;
        return int(shreg & 0xff);
    }
};

// Bytes waiting in one direction; the consumed prefix is dropped in bulk, not per byte.
struct ByteQueue {
    std::vector<uint8_t> data;
    size_t head = 0;

    size_t size() const { return data.size() - head; }
    bool empty() const { return head == data.size(); }
    const uint8_t* front() const { return data.data() + head; }

    void pop(size_t n) {
        head += n;
        if (head == data.size()) {
            data.clear();
            head = 0;
        }
    }

    void push(const uint8_t* bytes, size_t n) {
        if (head > 65536) {
            data.erase(data.begin(), data.begin() + head);
            head = 0;
        }
        data.insert(data.end(), bytes, bytes + n);
    }
};

// The simulated XDMA device files: a named pipe per direction.
struct Xdma {
    std::string h2c_path, c2h_path;
    int h2c = -1, c2h = -1;
    ByteQueue in;                 // host -> design, read from h2c, not yet taken
    ByteQueue out;                // design -> host, not yet written to c2h
    size_t released = 0;          // bytes at the front of `out` that end with a packet
    uint64_t to_chip = 0, from_chip = 0, packets = 0;

    bool active() const { return h2c >= 0; }
    bool quiet() const { return in.empty() && out.empty(); }
};

// A named pipe at `path` opened for reading and writing without blocking. A pipe left by an
// earlier run is replaced; any other file is refused.
int make_fifo(const std::string& path) {
    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISFIFO(st.st_mode)) {
            std::fprintf(stderr, "vboard: --xdma: %s exists and is not a named pipe\n",
                         path.c_str());
            return -1;
        }
        unlink(path.c_str());
    }
    if (mkfifo(path.c_str(), 0600) < 0) {
        std::fprintf(stderr, "vboard: --xdma: cannot make the named pipe %s: %s\n",
                     path.c_str(), std::strerror(errno));
        return -1;
    }
    // O_RDWR: the pipe always has a reader and a writer (this process), so the host's
    // open() never blocks, its reads never see end of file and our writes never fail with
    // EPIPE while it is away.
    int fd = open(path.c_str(), O_RDWR | O_NONBLOCK);
    if (fd < 0) {
        std::fprintf(stderr, "vboard: --xdma: cannot open %s: %s\n", path.c_str(),
                     std::strerror(errno));
        unlink(path.c_str());
    }
    return fd;
}

int open_xdma(const char* dir, Xdma* x, std::string* base_out) {
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        std::fprintf(stderr, "vboard: --xdma: cannot make the folder %s: %s\n", dir,
                     std::strerror(errno));
        return -1;
    }
    char real[PATH_MAX];
    if (!realpath(dir, real)) {
        std::fprintf(stderr, "vboard: --xdma: %s: %s\n", dir, std::strerror(errno));
        return -1;
    }
    std::string base = std::string(real) + "/xdma0";
    x->h2c_path = base + "_h2c_0";
    x->c2h_path = base + "_c2h_0";
    x->h2c = make_fifo(x->h2c_path);
    if (x->h2c < 0) return -1;
    x->c2h = make_fifo(x->c2h_path);
    if (x->c2h < 0) {
        close(x->h2c);
        unlink(x->h2c_path.c_str());
        x->h2c = -1;
        return -1;
    }
    *base_out = base;
    return 0;
}

void close_xdma(Xdma* x) {
    if (!x->active()) return;
    close(x->h2c);
    close(x->c2h);
    unlink(x->h2c_path.c_str());
    unlink(x->c2h_path.c_str());
    x->h2c = x->c2h = -1;
}

struct Options {
    uint32_t divisor = VBOARD_DIVISOR;
    unsigned long baud = 3000000;
    double stats = 0.0;
    const char* trace = nullptr;
    const char* link = nullptr;
    const char* xdma = nullptr;
    bool watch_stdin = false;
    uint64_t max_cycles = 0;
    bool no_sleep = false;
    uint32_t reset = 8;
};

int usage(const char* prog, const char* why) {
    std::fprintf(stderr, "vboard: %s\nusage: %s [--divisor N] [--baud B] [--stats S] "
                 "[--trace PATH] [--link PATH] [--xdma DIR] [--watch-stdin] [--max-cycles N] "
                 "[--no-sleep] [--reset N]\n", why, prog);
    return 2;
}

bool parse_u64(const char* text, uint64_t* out) {
    if (!text || !*text) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 10);
    if (errno || *end || text[0] == '-') return false;
    *out = v;
    return true;
}

// A slave side in raw mode: no echo, no line editing, no CR/LF translation, 8-bit clean.
int open_pty(int* master_out, int* slave_out, std::string* path_out) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0) return -1;
    if (grantpt(master) < 0 || unlockpt(master) < 0) {
        close(master);
        return -1;
    }
    const char* name = ptsname(master);
    if (!name) {
        close(master);
        return -1;
    }
    std::string path(name);
    // Keeping a slave descriptor open ourselves keeps the terminal alive between host
    // sessions: without it the master reads EIO whenever no host has the port open, and
    // bytes sent by the design in the meantime would be lost.
    int slave = open(path.c_str(), O_RDWR | O_NOCTTY);
    if (slave < 0) {
        close(master);
        return -1;
    }
    termios tio;
    if (tcgetattr(slave, &tio) < 0) {
        close(slave);
        close(master);
        return -1;
    }
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
    int flags = fcntl(master, F_GETFL);
    fcntl(master, F_SETFL, flags | O_NONBLOCK);
    *master_out = master;
    *slave_out = slave;
    *path_out = path;
    return 0;
}

struct Counters {
    uint64_t cycles = 0;
    uint64_t to_chip = 0;
    uint64_t from_chip = 0;
    uint64_t dropped = 0;
    double start = 0.0;
    double slept = 0.0;
};

void report(const char* what, const Counters& c, uint64_t frame_errors, const Xdma& x) {
    double seconds = now_s() - c.start;
    double busy = seconds - c.slept;
    double rate = busy > 0 ? c.cycles / busy : 0.0;
    std::fprintf(stderr,
                 "vboard: %s cycles=%llu seconds=%.3f busy_seconds=%.3f cycles_per_s=%.0f "
                 "bytes_to_chip=%llu bytes_from_chip=%llu frame_errors=%llu dropped=%llu",
                 what, (unsigned long long)c.cycles, seconds, busy, rate,
                 (unsigned long long)c.to_chip, (unsigned long long)c.from_chip,
                 (unsigned long long)frame_errors, (unsigned long long)c.dropped);
    if (x.active() || x.to_chip || x.from_chip)
        std::fprintf(stderr, " dma_to_chip=%llu dma_from_chip=%llu dma_packets=%llu",
                     (unsigned long long)x.to_chip, (unsigned long long)x.from_chip,
                     (unsigned long long)x.packets);
    std::fputc('\n', stderr);
    std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        uint64_t n = 0;
        if (a == "--divisor") {
            if (!parse_u64(v, &n) || n < 2 || n > 1000000) return usage(argv[0], "bad --divisor");
            opt.divisor = uint32_t(n);
            ++i;
        } else if (a == "--baud") {
            if (!parse_u64(v, &n) || n == 0) return usage(argv[0], "bad --baud");
            opt.baud = (unsigned long)n;
            ++i;
        } else if (a == "--stats") {
            char* end = nullptr;
            opt.stats = v ? std::strtod(v, &end) : -1;
            if (!v || *end || !(opt.stats > 0)) return usage(argv[0], "bad --stats");
            ++i;
        } else if (a == "--trace") {
            if (!v) return usage(argv[0], "--trace needs a path");
            opt.trace = v;
            ++i;
        } else if (a == "--link") {
            if (!v) return usage(argv[0], "--link needs a path");
            opt.link = v;
            ++i;
        } else if (a == "--xdma") {
            if (!v || !*v) return usage(argv[0], "--xdma needs a folder");
            opt.xdma = v;
            ++i;
        } else if (a == "--max-cycles") {
            if (!parse_u64(v, &n)) return usage(argv[0], "bad --max-cycles");
            opt.max_cycles = n;
            ++i;
        } else if (a == "--reset") {
            if (!parse_u64(v, &n) || n < 1 || n > 1000000) return usage(argv[0], "bad --reset");
            opt.reset = uint32_t(n);
            ++i;
        } else if (a == "--watch-stdin") {
            opt.watch_stdin = true;
        } else if (a == "--no-sleep") {
            opt.no_sleep = true;
        } else {
            return usage(argv[0], ("unknown argument " + a).c_str());
        }
    }
#if !VBOARD_TRACE
    if (opt.trace) {
        std::fprintf(stderr, "vboard: --trace: this executable was built without waveform "
                     "support (build it with waves=\"fst\" or \"vcd\")\n");
        return 2;
    }
#endif
#if !VBOARD_DMA_PORT
    if (opt.xdma) {
        std::fprintf(stderr, "vboard: --xdma: this design has no DMA streams (h2c and c2h "
                     "ports)\n");
        return 2;
    }
#endif

    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: a signal must wake a sleeping poll().
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int master = -1, slave = -1;
    std::string path;
    if (open_pty(&master, &slave, &path) < 0) {
        std::fprintf(stderr, "vboard: cannot open a pseudo-terminal: %s\n", std::strerror(errno));
        return 2;
    }
    if (opt.link) {
        struct stat st;
        if (lstat(opt.link, &st) == 0) {
            // Replace a stale link from an earlier run, never a file.
            if (!S_ISLNK(st.st_mode)) {
                std::fprintf(stderr, "vboard: --link %s exists and is not a symbolic link\n",
                             opt.link);
                return 2;
            }
            unlink(opt.link);
        }
        if (symlink(path.c_str(), opt.link) < 0) {
            std::fprintf(stderr, "vboard: cannot link %s to %s: %s\n", opt.link, path.c_str(),
                         std::strerror(errno));
            opt.link = nullptr;
        }
    }
    Xdma xdma;
    std::string xdma_base;
    if (opt.xdma && open_xdma(opt.xdma, &xdma, &xdma_base) < 0) {
        if (opt.link) unlink(opt.link);
        close(slave);
        close(master);
        return 2;
    }

    const std::unique_ptr<VerilatedContext> context{new VerilatedContext};
#if VBOARD_TRACE
    // Tracing must be on before the model is made.
    if (opt.trace) context->traceEverOn(true);
#endif
    const std::unique_ptr<Vboard> top{new Vboard{context.get()}};
#if VBOARD_TRACE
    std::unique_ptr<Tracer> tracer;
    if (opt.trace) {
        tracer.reset(new Tracer);
        top->trace(tracer.get(), 99);
        tracer->open(opt.trace);
    }
#define DUMP()                                    \
    do {                                          \
        if (tracer) tracer->dump(context->time()); \
        context->timeInc(1);                      \
    } while (0)
#else
#define DUMP() \
    do {       \
    } while (0)
#endif

    std::printf("serial://%s?baud=%lu\n", path.c_str(), opt.baud);
    if (xdma.active()) std::printf("pcie://%s\n", xdma_base.c_str());
    std::fflush(stdout);

    Serialiser ser(opt.divisor);
    Deserialiser des(opt.divisor);
    Counters cnt;
    cnt.start = now_s();
    double next_stats = opt.stats > 0 ? cnt.start + opt.stats : 0.0;

    std::vector<uint8_t> out;   // decoded bytes not yet accepted by the terminal
    size_t out_head = 0;
    // A host that stops reading must not make the simulator grow without bound; a real
    // adapter drops bytes too once its buffers are full.
    const size_t out_cap = size_t(1) << 20;
    // Bytes read ahead of the serialiser; beyond this the host's writes block in the kernel.
    const size_t in_cap = 4096;
    // The DMA streams move a byte per cycle instead of one per ten bits: more read-ahead.
    const size_t dma_in_cap = 65536;
    const size_t dma_out_cap = size_t(1) << 20;
    uint8_t buf[65536];

    // Cycles since either line last moved: the design may still be answering.
    uint64_t quiet = 0;
    const uint64_t quiet_needed = 20ull * opt.divisor;
    // Cycles between looks at the terminal, adapted so that a look comes every ~0.1-0.4 ms
    // whether the design simulates at 10 M or 10 k cycles per second.
    uint64_t chunk = 256;
    const uint64_t serial_start = opt.reset + 2ull * opt.divisor;

    top->clk = 0;
    top->rst = 1;
    top->uart_rx = 1;
#if VBOARD_DMA_PORT
    top->h2c___05Fvalid = 0;
    top->c2h___05Fready = 0;
#endif
    top->eval();
    DUMP();

    bool hangup = false;
    while (!g_stop) {
        double t0 = now_s();
        uint64_t n = chunk;
        if (opt.max_cycles && cnt.cycles + n > opt.max_cycles) n = opt.max_cycles - cnt.cycles;
        for (uint64_t k = 0; k < n; ++k) {
#if VBOARD_DMA_PORT
            // Handshakes complete on the rising edge: sample them just before it.
            const bool h2c_fire = top->h2c___05Fvalid && top->h2c___05Fready;
            const bool c2h_fire = top->c2h___05Fvalid && top->c2h___05Fready;
            const uint32_t c2h_word = top->c2h___05Fpayload;
#endif
            top->clk = 1;
            top->eval();
            DUMP();
#if VBOARD_DMA_PORT
            if (h2c_fire) xdma.in.pop(1);
            if (c2h_fire) {
                const uint8_t byte = uint8_t(c2h_word & 0xff);
                xdma.out.push(&byte, 1);
                ++xdma.from_chip;
                if (c2h_word & 0x100) {
                    xdma.released = xdma.out.size();
                    ++xdma.packets;
                }
            }
#endif
            int byte = des.step(top->uart_tx);
            if (byte >= 0) {
                if (out.size() - out_head < out_cap) {
                    out.push_back(uint8_t(byte));
                    ++cnt.from_chip;
                } else {
                    ++cnt.dropped;
                }
            }
            uint64_t cycle = cnt.cycles + k + 1;
            ser.advance(cycle >= serial_start);
            quiet = (ser.bit < 0 && des.idle() && top->uart_tx) ? quiet + 1 : 0;
            top->clk = 0;
            top->rst = cycle < opt.reset;
            top->uart_rx = ser.line();
#if VBOARD_DMA_PORT
            const bool running = cycle >= serial_start;
            top->h2c___05Fvalid = running && !xdma.in.empty();
            if (!xdma.in.empty()) top->h2c___05Fpayload = *xdma.in.front();
            top->c2h___05Fready = running && xdma.active() && xdma.out.size() < dma_out_cap;
#endif
            top->eval();
            DUMP();
        }
        cnt.cycles += n;
        if (opt.max_cycles && cnt.cycles >= opt.max_cycles) break;

        bool design_idle = false;
#if VBOARD_IDLE_PORT
        design_idle = top->idle && !top->rst;
#endif
        // Bytes not yet ended by a `last` mark go out anyway once the design is idle (no more
        // of their packet is coming) or the buffer is full (the design waits for the host to
        // read): held back, they would be held for good.
        if ((design_idle || xdma.out.size() >= dma_out_cap) && xdma.released < xdma.out.size())
            xdma.released = xdma.out.size();
        const bool can_sleep = !opt.no_sleep && design_idle && ser.idle() &&
                               quiet >= quiet_needed && out_head == out.size() && xdma.quiet();
        pollfd fds[4];
        int nfds = 0;
        bool want_in = ser.pending() < in_cap;
        fds[nfds].fd = master;
        fds[nfds].events = short((want_in ? POLLIN : 0) | (out_head < out.size() ? POLLOUT : 0));
        fds[nfds].revents = 0;
        ++nfds;
        int stdin_slot = -1, h2c_slot = -1, c2h_slot = -1;
        if (opt.watch_stdin) {
            stdin_slot = nfds;
            fds[nfds].fd = 0;
            fds[nfds].events = POLLIN;
            fds[nfds].revents = 0;
            ++nfds;
        }
        const bool want_dma_in = xdma.active() && xdma.in.size() < dma_in_cap;
        if (want_dma_in) {
            h2c_slot = nfds;
            fds[nfds].fd = xdma.h2c;
            fds[nfds].events = POLLIN;
            fds[nfds].revents = 0;
            ++nfds;
        }
        if (xdma.active() && xdma.released > 0) {
            c2h_slot = nfds;
            fds[nfds].fd = xdma.c2h;
            fds[nfds].events = POLLOUT;
            fds[nfds].revents = 0;
            ++nfds;
        }
        int timeout_ms = can_sleep ? 50 : 0;
        if (can_sleep && opt.stats > 0) {
            int until = int((next_stats - now_s()) * 1000) + 1;
            if (until < timeout_ms) timeout_ms = until < 0 ? 0 : until;
        }
        double before_poll = can_sleep ? now_s() : 0.0;
        int ready = poll(fds, nfds, timeout_ms);
        if (can_sleep) cnt.slept += now_s() - before_poll;
        if (ready < 0 && errno != EINTR) {
            std::fprintf(stderr, "vboard: poll: %s\n", std::strerror(errno));
            break;
        }
        if (ready > 0) {
            if (want_in && (fds[0].revents & POLLIN)) {
                ssize_t got = read(master, buf, in_cap - ser.pending());
                if (got > 0) {
                    ser.push(buf, size_t(got));
                    cnt.to_chip += uint64_t(got);
                }
            }
            if (stdin_slot >= 0 && (fds[stdin_slot].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t got = read(0, buf, sizeof buf);
                if (got <= 0) hangup = true;
            }
            if (h2c_slot >= 0 && (fds[h2c_slot].revents & POLLIN)) {
                ssize_t got = read(xdma.h2c, buf, dma_in_cap - xdma.in.size());
                if (got > 0) {
                    xdma.in.push(buf, size_t(got));
                    xdma.to_chip += uint64_t(got);
                }
            }
        }
        if (c2h_slot >= 0) {
            ssize_t put = write(xdma.c2h, xdma.out.front(), xdma.released);
            if (put > 0) {
                xdma.out.pop(size_t(put));
                xdma.released -= size_t(put);
            }
        }
        if (out_head < out.size()) {
            ssize_t put = write(master, out.data() + out_head, out.size() - out_head);
            if (put > 0) {
                out_head += size_t(put);
                if (out_head == out.size()) {
                    out.clear();
                    out_head = 0;
                }
            }
        }
        if (hangup) break;

        double t1 = now_s();
        if (!can_sleep) {
            double spent = t1 - t0;
            if (spent < 1e-4 && chunk < (1u << 16)) chunk *= 2;
            else if (spent > 4e-4 && chunk > 8) chunk /= 2;
        }
        if (opt.stats > 0 && t1 >= next_stats) {
            report("stats", cnt, des.frame_errors, xdma);
            next_stats = t1 + opt.stats;
        }
    }

    top->final();
#if VBOARD_TRACE
    if (tracer) tracer->close();
#endif
    if (opt.link) unlink(opt.link);
    close_xdma(&xdma);
    close(slave);
    close(master);
    report("exit", cnt, des.frame_errors, xdma);
    return 0;
}
