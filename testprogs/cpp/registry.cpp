// registry: a C++ service loop built with plain `g++ -O2` (libstdc++ and glibc without frame
// pointers), for the unwinding tests of `leaktrace sites`.
//
//   registry SECONDS [KIB_PER_SEC]
//
// Handlers are called through a virtual interface. `EventLog::record` appends every event to a
// std::map of std::vector<char> that is never pruned (the leak: KIB_PER_SEC/100 KiB every 10 ms,
// default 2048 KiB/s): the memory comes from `operator new` inside std::vector's growth path
// (libstdc++ → glibc malloc) and is zero-filled by the vector (memset, in glibc). `Cache::lookup`
// and `Parser::parse` build and drop vectors and strings. Prints {"pid":N,"ready":true} once its
// steady state begins, then runs SECONDS and exits 0.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct Handler {
    virtual ~Handler() = default;
    virtual void handle(unsigned id) = 0;
};

class EventLog : public Handler {
  public:
    explicit EventLog(size_t bytes) : bytes_(bytes) {}
    void handle(unsigned id) override { record(id); }
    void record(unsigned id);

  private:
    size_t bytes_;
    size_t total_ = 0;
    std::map<unsigned, std::vector<char>> events_;  // never pruned
};

void EventLog::record(unsigned id) {
    std::vector<char> &v = events_[id];
    // Grow in steps, as a buffer being filled does: reallocations through operator new.
    for (size_t n = 256; n < bytes_; n *= 2)
        v.resize(n);
    v.resize(bytes_);
    total_ += v.size();
}

class Cache : public Handler {
  public:
    void handle(unsigned id) override { lookup(id); }
    void lookup(unsigned id) {
        std::vector<std::string> keys;
        for (unsigned i = 0; i < 16; i++)
            keys.push_back("key-" + std::to_string(id * 16 + i) + std::string(40 + i * 8, 'k'));
        if (entries_.size() > 512)
            entries_.clear();  // bounded
        entries_[id % 1024] = keys.back();
    }

  private:
    std::map<unsigned, std::string> entries_;
};

class Parser : public Handler {
  public:
    void handle(unsigned id) override { parse(id); }
    void parse(unsigned id) {
        std::vector<char> body(1024 + (id % 16) * 512, 'b');
        std::string text(body.begin(), body.end());
        sink_ = text.size();
    }

  private:
    volatile size_t sink_ = 0;
};

int main(int argc, char **argv) {
    double secs = argc > 1 ? std::atof(argv[1]) : 10;
    size_t kib = argc > 2 ? static_cast<size_t>(std::atol(argv[2])) : 2048;
    size_t chunk = kib * 1024 / 100;
    std::vector<std::unique_ptr<Handler>> handlers;
    handlers.emplace_back(new Cache());
    handlers.emplace_back(new Parser());
    handlers.emplace_back(new EventLog(chunk ? chunk : 1));
    for (unsigned i = 0; i < 64; i++)
        handlers[i % 2]->handle(i);
    std::printf("{\"pid\":%d,\"ready\":true}\n", static_cast<int>(getpid()));
    std::fflush(stdout);
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(secs);
    unsigned id = 0;
    while (std::chrono::steady_clock::now() < end) {
        for (int i = 0; i < 8; i++)
            handlers[i % 2]->handle(id++);
        handlers[2]->handle(id++);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
}
