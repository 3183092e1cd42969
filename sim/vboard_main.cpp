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
//   --divisor N       clock cycles per bit (default: VBOARD_DIVISOR of the build)
//   --baud B          bit rate shown in the URL; a pseudo-terminal ignores it (default 3000000)
//   --stats S         print statistics to stderr every S seconds
//   --trace PATH      record a waveform (only in builds made with --trace-fst or --trace)
//   --link PATH       also make PATH a symbolic link to the slave (removed on exit, and while
//                     the link is unplugged)
//   --xdma DIR        also serve the DMA streams through named pipes in DIR (made if missing;
//                     the pipes are removed on exit); only for designs with h2c and c2h
//   --watch-stdin     exit when stdin reaches end of file (the parent has gone), and take
//                     commands from it (below)
//   --max-cycles N    exit after N clock cycles
//   --no-sleep        never sleep, even when the design reports idle
//   --reset N         cycles rst is held high at start and by SIGUSR1 (default 8)
//   --unplug-ms N     milliseconds the serial link stays unplugged after SIGUSR2 (default 1000)
//   --flip-rate P     flip one random bit of each byte crossing the UART, in either direction,
//                     with probability P (0 to 1, default 0)
//   --drop-rate P     lose each byte crossing the UART with probability P (default 0)
//   --flip-seed S     seed of the flips and drops (an unsigned 64-bit integer, default 0)
//
// Fault injection, for testing a host against the chip's own Verilog:
//
//   Reset button. SIGUSR1 holds rst high for --reset cycles from the next cycle on, as the
//   board's reset button would. The serial line is not paused: bytes the host sends
//   meanwhile reach a design in reset. When rst falls again stderr gets
//       vboard: reset cycles=N at=C
//   (C: the cycle rst rose).
//
//   Unplugging. SIGUSR2 pulls the serial link out for --unplug-ms milliseconds, as pulling a
//   USB adapter does: the pseudo-terminal is closed (a host's reads and writes on it fail at
//   once: end of file or EIO), the --link symbolic link is removed, bytes in flight either
//   way are lost (a frame being sent to the design is cut: its line goes idle, high) and
//   bytes the design sends meanwhile go nowhere. The clock keeps running. stderr gets
//       vboard: unplug ms=M
//   and, once the time is up, a fresh pseudo-terminal is opened (usually another
//   /dev/pts/N), the --link symbolic link points to it again and stderr gets
//       vboard: replug serial:///dev/pts/N?baud=B
//   A second unplug while unplugged restarts the time. The XDMA pipes are not unplugged.
//
//   Noise on the wire. Each byte between the pseudo-terminal and the design's UART pins, in
//   either direction, is first lost with probability --drop-rate, then, if not lost, has one
//   bit flipped with probability --flip-rate: the design receives the corrupted byte and
//   the host its corrupted answers. The draws are reproducible: each direction d (0 towards
//   the design, 1 from it) has its own splitmix64 generator, its state starting at
//   S xor (d ? 0xD1B54A32D192ED03 : 0), so what happens to the k-th byte of a direction
//   depends only on S, the rates and k, not on timing. Per byte, while the drop rate is
//   above zero, a draw r drops the byte if (r >> 11) < floor(drop_rate * 2^53); then, while
//   the flip rate is above zero (and the byte was not dropped), a draw r flips bit (r & 7)
//   if (r >> 11) < floor(flip_rate * 2^53).
//
//   Commands. With --watch-stdin, each line on stdin is a command: "reset [N]" (as SIGUSR1,
//   for N cycles) or "unplug [MS]" (as SIGUSR2, for MS milliseconds); a bad one is reported
//   on stderr and ignored.
//
// SIGTERM, SIGINT and SIGHUP end the run cleanly; the last line on stderr is always
//     vboard: exit cycles=... seconds=... busy_seconds=... cycles_per_s=... ...
// (with --xdma followed by dma_to_chip=... dma_from_chip=... dma_packets=..., then always
// resets=... unplugs=..., with a --flip-rate above 0 flips_to_chip=... flips_from_chip=...
// and with a --drop-rate above 0 drops_to_chip=... drops_from_chip=...) and the exit status
// is 0, or 2 for a usage, pseudo-terminal or pipe error. bytes_to_chip counts every byte the
// host wrote, dropped ones included; bytes_from_chip the bytes queued for the host, so
// neither the dropped ones nor those sent while unplugged.

#include <cerrno>
#include <cmath>
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
// Fault requests: the handlers only raise a flag, which the main loop turns into the fault
// between two chunks of cycles (nothing else is async-signal-safe).
volatile sig_atomic_t g_reset = 0;
volatile sig_atomic_t g_unplug = 0;

void on_signal(int) { g_stop = 1; }
void on_reset(int) { g_reset = 1; }
void on_unplug(int) { g_unplug = 1; }

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

    // The adapter is pulled: queued bytes are lost and a frame under way stops short, the
    // line going back to idle (high) at once.
    void cut() {
        queue.clear();
        head = 0;
        bit = -1;
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

// splitmix64: tiny, fast and fully specified, so that a test can predict every fault from the
// seed (the standard library's distributions differ between implementations).
uint64_t splitmix64(uint64_t* state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Bytes lost or bit-flipped on the wire; direction 0 is towards the design, 1 from it. Each
// direction draws from its own generator, so its faults depend on its byte count alone.
struct Noise {
    uint64_t flip_threshold = 0;   // probability × 2^53, compared with a 53-bit draw
    uint64_t drop_threshold = 0;
    uint64_t state[2] = {0, 0};
    uint64_t flips[2] = {0, 0};
    uint64_t drops[2] = {0, 0};

    static uint64_t threshold(double p) { return uint64_t(std::ldexp(p, 53)); }

    void setup(double flip_rate, double drop_rate, uint64_t seed) {
        flip_threshold = threshold(flip_rate);
        drop_threshold = threshold(drop_rate);
        state[0] = seed;
        state[1] = seed ^ 0xD1B54A32D192ED03ull;
    }
    bool active() const { return flip_threshold || drop_threshold; }

    // The byte as it arrives at the other end, or -1 if it is lost.
    int apply(int dir, uint8_t byte) {
        if (drop_threshold && (splitmix64(&state[dir]) >> 11) < drop_threshold) {
            ++drops[dir];
            return -1;
        }
        if (flip_threshold) {
            const uint64_t r = splitmix64(&state[dir]);
            if ((r >> 11) < flip_threshold) {
                ++flips[dir];
                byte ^= uint8_t(1u << (r & 7));
            }
        }
        return byte;
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
    uint64_t unplug_ms = 1000;
    double flip_rate = 0.0;
    double drop_rate = 0.0;
    uint64_t flip_seed = 0;
};

// Longest reset and unplug a request may ask for.
const uint64_t max_reset = 1000000;
const uint64_t max_unplug_ms = 86400000;

int usage(const char* prog, const char* why) {
    std::fprintf(stderr, "vboard: %s\nusage: %s [--divisor N] [--baud B] [--stats S] "
                 "[--trace PATH] [--link PATH] [--xdma DIR] [--watch-stdin] [--max-cycles N] "
                 "[--no-sleep] [--reset N] [--unplug-ms N] [--flip-rate P] [--drop-rate P] "
                 "[--flip-seed S]\n", why, prog);
    return 2;
}

// A probability: a number from 0 to 1 and nothing after it.
bool parse_rate(const char* text, double* out) {
    if (!text || !*text) return false;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(text, &end);
    if (errno || *end || !(v >= 0.0 && v <= 1.0)) return false;
    *out = v;
    return true;
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

// Point `link` at the slave `path`. A stale symbolic link (an earlier run, or this one before
// an unplug) is replaced, never a file. False, with the reason on stderr, if not done.
bool make_link(const char* link, const std::string& path) {
    struct stat st;
    if (lstat(link, &st) == 0) {
        if (!S_ISLNK(st.st_mode)) {
            std::fprintf(stderr, "vboard: --link %s exists and is not a symbolic link\n", link);
            return false;
        }
        unlink(link);
    }
    if (symlink(path.c_str(), link) < 0) {
        std::fprintf(stderr, "vboard: cannot link %s to %s: %s\n", link, path.c_str(),
                     std::strerror(errno));
        return false;
    }
    return true;
}

// Remove `link` if it is still a symbolic link (a file put there since is not ours).
void remove_link(const char* link) {
    struct stat st;
    if (lstat(link, &st) == 0 && S_ISLNK(st.st_mode)) unlink(link);
}

struct Counters {
    uint64_t cycles = 0;
    uint64_t to_chip = 0;
    uint64_t from_chip = 0;
    uint64_t dropped = 0;
    uint64_t resets = 0;
    uint64_t unplugs = 0;
    double start = 0.0;
    double slept = 0.0;
};

void report(const char* what, const Counters& c, uint64_t frame_errors, const Xdma& x,
            const Noise& noise) {
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
    std::fprintf(stderr, " resets=%llu unplugs=%llu", (unsigned long long)c.resets,
                 (unsigned long long)c.unplugs);
    if (noise.flip_threshold || noise.flips[0] || noise.flips[1])
        std::fprintf(stderr, " flips_to_chip=%llu flips_from_chip=%llu",
                     (unsigned long long)noise.flips[0], (unsigned long long)noise.flips[1]);
    if (noise.drop_threshold || noise.drops[0] || noise.drops[1])
        std::fprintf(stderr, " drops_to_chip=%llu drops_from_chip=%llu",
                     (unsigned long long)noise.drops[0], (unsigned long long)noise.drops[1]);
    std::fputc('\n', stderr);
    std::fflush(stderr);
}

// Faults asked for and not yet applied; 0 cycles / a negative time for none.
struct Requests {
    uint64_t reset = 0;
    int64_t unplug_ms = -1;
};

// One command line from stdin (see the top of this file).
void command(const std::string& line, const Options& opt, Requests* req) {
    char name[16] = "";
    char arg[32] = "";
    char extra[2] = "";
    const int fields = std::sscanf(line.c_str(), "%15s %31s %1s", name, arg, extra);
    if (fields == 1 || fields == 2) {
        const bool given = fields == 2;
        uint64_t n = 0;
        if (std::strcmp(name, "reset") == 0) {
            n = opt.reset;
            if (!given || (parse_u64(arg, &n) && n >= 1 && n <= max_reset)) {
                req->reset = n;
                return;
            }
        } else if (std::strcmp(name, "unplug") == 0) {
            n = opt.unplug_ms;
            if (!given || (parse_u64(arg, &n) && n <= max_unplug_ms)) {
                req->unplug_ms = int64_t(n);
                return;
            }
        }
    }
    std::fprintf(stderr, "vboard: ignored the command %.80s (commands: reset [1..%llu cycles], "
                 "unplug [0..%llu ms])\n", line.c_str(), (unsigned long long)max_reset,
                 (unsigned long long)max_unplug_ms);
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
            if (!parse_u64(v, &n) || n < 1 || n > max_reset)
                return usage(argv[0], "bad --reset (1 to 1000000 cycles)");
            opt.reset = uint32_t(n);
            ++i;
        } else if (a == "--unplug-ms") {
            if (!parse_u64(v, &n) || n > max_unplug_ms)
                return usage(argv[0], "bad --unplug-ms (0 to 86400000 milliseconds)");
            opt.unplug_ms = n;
            ++i;
        } else if (a == "--flip-rate") {
            if (!parse_rate(v, &opt.flip_rate))
                return usage(argv[0], "bad --flip-rate (a probability from 0 to 1)");
            ++i;
        } else if (a == "--drop-rate") {
            if (!parse_rate(v, &opt.drop_rate))
                return usage(argv[0], "bad --drop-rate (a probability from 0 to 1)");
            ++i;
        } else if (a == "--flip-seed") {
            if (!parse_u64(v, &n))
                return usage(argv[0], "bad --flip-seed (an unsigned 64-bit integer)");
            opt.flip_seed = n;
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
    sa.sa_handler = on_reset;
    sigaction(SIGUSR1, &sa, nullptr);
    sa.sa_handler = on_unplug;
    sigaction(SIGUSR2, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int master = -1, slave = -1;
    std::string path;
    if (open_pty(&master, &slave, &path) < 0) {
        std::fprintf(stderr, "vboard: cannot open a pseudo-terminal: %s\n", std::strerror(errno));
        return 2;
    }
    if (opt.link && !make_link(opt.link, path)) {
        struct stat st;
        if (lstat(opt.link, &st) == 0 && !S_ISLNK(st.st_mode)) {
            close(slave);
            close(master);
            return 2;
        }
        opt.link = nullptr;
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
    Noise noise;
    noise.setup(opt.flip_rate, opt.drop_rate, opt.flip_seed);
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

    // rst is high on the rising edges before reset_until; a reset button moves it on.
    uint64_t reset_until = opt.reset;
    uint64_t reset_from = 0;
    uint32_t reset_cycles = 0;      // of a requested reset not yet reported as done
    Requests req;
    std::string commands;           // stdin not yet ended by a newline
    bool plugged = true;
    double replug_at = 0.0;

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
        // Requests from signals and commands take effect between chunks: at the next cycle.
        if (g_reset) {
            g_reset = 0;
            if (!req.reset) req.reset = opt.reset;
        }
        if (g_unplug) {
            g_unplug = 0;
            if (req.unplug_ms < 0) req.unplug_ms = int64_t(opt.unplug_ms);
        }
        if (req.reset) {
            // rst is sampled on the next rising edge; it was set low after the last one.
            top->rst = 1;
            top->eval();
            reset_from = cnt.cycles;
            reset_until = cnt.cycles + req.reset;
            reset_cycles = uint32_t(req.reset);
            req.reset = 0;
            ++cnt.resets;
        }
        if (req.unplug_ms >= 0) {
            if (plugged) {
                // The host's descriptors on the slave now fail at once; the device node and
                // our link go, as /dev/ttyUSB0 does when the adapter is pulled.
                close(slave);
                close(master);
                slave = master = -1;
                if (opt.link) remove_link(opt.link);
                ser.cut();
                out.clear();
                out_head = 0;
                plugged = false;
            }
            replug_at = now_s() + req.unplug_ms * 1e-3;
            ++cnt.unplugs;
            std::fprintf(stderr, "vboard: unplug ms=%lld\n", (long long)req.unplug_ms);
            std::fflush(stderr);
            req.unplug_ms = -1;
        }
        if (!plugged && now_s() >= replug_at) {
            if (open_pty(&master, &slave, &path) == 0) {
                if (opt.link) make_link(opt.link, path);
                plugged = true;
                std::fprintf(stderr, "vboard: replug serial://%s?baud=%lu\n", path.c_str(),
                             opt.baud);
            } else {
                // Out of pseudo-terminals, say: stay unplugged and try again.
                std::fprintf(stderr, "vboard: cannot open a pseudo-terminal to replug: %s; "
                             "retrying in 1 s\n", std::strerror(errno));
                replug_at = now_s() + 1.0;
            }
            std::fflush(stderr);
        }

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
            // Unplugged, the design's bytes go nowhere.
            if (byte >= 0 && plugged) byte = noise.apply(1, uint8_t(byte));
            if (byte >= 0 && plugged) {
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
            top->rst = cycle < reset_until;
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
        if (reset_cycles && cnt.cycles >= reset_until) {
            std::fprintf(stderr, "vboard: reset cycles=%u at=%llu\n", reset_cycles,
                         (unsigned long long)reset_from);
            std::fflush(stderr);
            reset_cycles = 0;
        }
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
        int master_slot = -1, stdin_slot = -1, h2c_slot = -1, c2h_slot = -1;
        const bool want_in = plugged && ser.pending() < in_cap;
        if (plugged) {
            master_slot = nfds;
            fds[nfds].fd = master;
            fds[nfds].events =
                short((want_in ? POLLIN : 0) | (out_head < out.size() ? POLLOUT : 0));
            fds[nfds].revents = 0;
            ++nfds;
        }
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
        if (can_sleep && !plugged) {
            int until = int((replug_at - now_s()) * 1000) + 1;
            if (until < timeout_ms) timeout_ms = until < 0 ? 0 : until;
        }
        // A signal that came during the chunk has not interrupted this poll: do not sleep
        // on it. (One arriving between this test and poll() waits at most one timeout.)
        if (g_reset || g_unplug || req.reset || req.unplug_ms >= 0) timeout_ms = 0;
        double before_poll = can_sleep ? now_s() : 0.0;
        int ready = poll(fds, nfds, timeout_ms);
        if (can_sleep) cnt.slept += now_s() - before_poll;
        if (ready < 0 && errno != EINTR) {
            std::fprintf(stderr, "vboard: poll: %s\n", std::strerror(errno));
            break;
        }
        if (ready > 0) {
            if (want_in && (fds[master_slot].revents & POLLIN)) {
                ssize_t got = read(master, buf, in_cap - ser.pending());
                if (got > 0) {
                    cnt.to_chip += uint64_t(got);
                    size_t kept = size_t(got);
                    if (noise.active()) {
                        kept = 0;
                        for (ssize_t i = 0; i < got; ++i) {
                            const int byte = noise.apply(0, buf[i]);
                            if (byte >= 0) buf[kept++] = uint8_t(byte);
                        }
                    }
                    ser.push(buf, kept);
                }
            }
            if (stdin_slot >= 0 && (fds[stdin_slot].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t got = read(0, buf, sizeof buf);
                if (got <= 0) {
                    hangup = true;
                } else {
                    commands.append(reinterpret_cast<const char*>(buf), size_t(got));
                    size_t start = 0, end;
                    while ((end = commands.find('\n', start)) != std::string::npos) {
                        command(commands.substr(start, end - start), opt, &req);
                        start = end + 1;
                    }
                    commands.erase(0, start);
                    // A parent that writes no newline is not obeyed, nor may it fill memory.
                    if (commands.size() > 256) commands.clear();
                }
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
        if (plugged && out_head < out.size()) {
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
            report("stats", cnt, des.frame_errors, xdma, noise);
            next_stats = t1 + opt.stats;
        }
    }

    top->final();
#if VBOARD_TRACE
    if (tracer) tracer->close();
#endif
    if (opt.link && plugged) remove_link(opt.link);
    close_xdma(&xdma);
    if (plugged) {
        close(slave);
        close(master);
    }
    report("exit", cnt, des.frame_errors, xdma, noise);
    return 0;
}
