/* service: a small request loop built the way services usually are (plain `cc -O2`, no
 * frame-pointer flag, the distribution's glibc), for the unwinding tests of `leaktrace sites`.
 *
 *   service SECONDS [KIB_PER_SEC]
 *
 * Requests are dispatched through a route table. `handle_login` remembers every session in a
 * list that is never pruned (the leak: KIB_PER_SEC/100 KiB every 10 ms, default 2048 KiB/s);
 * `handle_status` and `handle_upload` allocate, fill and free small buffers (which glibc
 * recycles: they do not grow the heap). Memory is filled
 * with memset/memcpy/snprintf, i.e. inside the C library, as real code does: the page faults and
 * the heap's brk calls happen in glibc, which has no frame pointers. Prints
 * {"pid":N,"ready":true} once its steady state begins, then runs SECONDS and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct request {
    unsigned id;
    const char *path;
    size_t body_len;
};

struct session {
    char token[48];
    char *profile;
    size_t len;
    struct session *next;
};

static struct session *sessions; /* never pruned */
static size_t session_bytes = 20 * 1024;
static void *volatile sink;

static struct session *new_session(const struct request *r) {
    struct session *s = malloc(sizeof *s);
    if (!s)
        abort();
    snprintf(s->token, sizeof s->token, "session-%08x-%s", r->id, r->path);
    s->len = session_bytes;
    s->profile = malloc(s->len);
    if (!s->profile)
        abort();
    memset(s->profile, 'p', s->len);
    return s;
}

void handle_login(const struct request *r) {
    struct session *s = new_session(r);
    s->next = sessions;
    sessions = s;
}

void handle_status(const struct request *r) {
    size_t n = 256 + r->id % 700;
    char *out = malloc(n);
    if (!out)
        abort();
    snprintf(out, n, "{\"id\":%u,\"sessions\":%p}", r->id, (void *)sessions);
    memset(out + 64, ' ', n - 64);
    sink = out;
    free(out);
}

void handle_upload(const struct request *r) {
    char *body = calloc(1, r->body_len);
    if (!body)
        abort();
    memset(body, 'u', r->body_len);
    char *copy = realloc(NULL, r->body_len / 2 + 1);
    if (!copy)
        abort();
    memcpy(copy, body, r->body_len / 2);
    sink = copy;
    free(copy);
    free(body);
}

static const struct route {
    const char *path;
    void (*handler)(const struct request *);
} routes[] = {
    {"/status", handle_status},
    {"/upload", handle_upload},
    {"/login", handle_login},
};

static void dispatch(const struct request *r) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(routes[i].path, r->path) == 0) {
            routes[i].handler(r);
            return;
        }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 10;
    size_t kib = argc > 2 ? (size_t)atol(argv[2]) : 2048;
    session_bytes = kib * 1024 / 100;
    if (session_bytes == 0)
        session_bytes = 1;
    /* Warm up the allocator's free lists with the short-lived sizes. */
    for (unsigned i = 0; i < 64; i++) {
        struct request r = {i, i % 2 ? "/status" : "/upload", 128 + 48 * (i % 16)};
        dispatch(&r);
    }
    printf("{\"pid\":%d,\"ready\":true}\n", (int)getpid());
    fflush(stdout);
    double end = now() + secs;
    unsigned id = 0;
    while (now() < end) {
        for (int i = 0; i < 8; i++) {
            struct request r = {id++, i % 2 ? "/status" : "/upload", 128 + 48 * (id % 16)};
            dispatch(&r);
        }
        struct request login = {id++, "/login", 0};
        dispatch(&login);
        usleep(10000);
    }
    return 0;
}
