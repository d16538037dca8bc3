/*
 * portico-cni, the native relay: what a container runtime runs as the `portico-cni` CNI IPAM plugin.
 *
 * It decides nothing. It reads the network configuration off stdin, finds the daemon's socket
 * (`ipam.socket` in the top-level `ipam` object, else $PORTICO_IPAM_SOCKET, else /run/portico/ipam.sock),
 * sends the raw call -- the CNI_* environment variables, PORTICO_IPAM_SOCKET and the stdin text -- to the
 * Portico daemon as one relay request line, and prints the daemon's answer: the exact stdout, stderr and
 * exit code the Node plugin (bin/portico-cni, src/overlay/cni/) would have produced, computed by the
 * daemon with the Node plugin's own TypeScript (src/overlay/cni/plan.ts). Protocol:
 * src/overlay/cni/protocol.ts.
 *
 *   request  {"relay":1,"env":{"CNI_COMMAND":"ADD",...},"stdin":"..."}\n
 *   reply    PCR1 <exit> <stdoutBytes> <stderrBytes>\n<stdout><stderr>
 *
 * Why: a runtime waits for the plugin process to exit, and node's start-up and teardown (unmapping its
 * heap, joining its threads: ~2.7 ms) cost more than the whole ADD; this process exits ~0.1 ms after
 * its result is written (`npm run bench -- ipam`).
 *
 * Fallback: whenever it cannot give the answer itself (the configuration is not JSON it can scan,
 * `ipam.socket` is not a usable string, the path does not fit in sun_path, the connection fails, the
 * daemon answers something that is not a relay reply -- an older daemon --, the reply is cut short or
 * late, stdin is not UTF-8 or larger than MAX_STDIN, the environment is one the Node plugin might read
 * otherwise: a CNI_* or PORTICO_* name twice, a PORTICO_CNI_TIMEOUT_MS node reads as another number)
 * it execs the Node plugin with the same argv and environment and the stdin content fed again (a memfd
 * on fd 0), so every error code and message still comes from the one TypeScript implementation. The
 * Node plugin's path is compiled in (-DPORTICO_CNI_FALLBACK_PATH="...", scripts/build-native.js) and
 * $PORTICO_CNI_FALLBACK overrides it.
 * If even that exec fails: a CNI error (code 11) on stdout, a line on stderr, exit 1.
 *
 * Environment: PORTICO_CNI_TIMEOUT_MS (default 30000; a plain decimal from 1 to 2147483647, else the
 * Node plugin runs) bounds the exchange with the daemon (a late answer falls back to the Node plugin,
 * which waits as long again before it reports code 11);
 * PORTICO_CNI_TIMING=1 prints `portico-cni: timing <CMD> <ms>` on stderr on success, as the Node plugin
 * does (from the config read to the result written); PORTICO_CNI_RELAY_DEBUG=1 says on stderr why it
 * falls back.
 *
 * Build: cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE '-DPORTICO_CNI_FALLBACK_PATH="/x/bin/portico-cni"'
 * libc only.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef PORTICO_CNI_FALLBACK_PATH
#error "define PORTICO_CNI_FALLBACK_PATH: the absolute path of bin/portico-cni (scripts/build-native.js does)"
#endif

#define DEFAULT_SOCKET "/run/portico/ipam.sock"
#define MAX_STDIN (16u << 20)            /* more than this: the Node plugin reads it */
#define MAX_REPLY_OUTPUT (64u << 20)     /* stdout + stderr in a reply */
#define MAX_JSON_DEPTH 512               /* deeper: the Node plugin parses it */
#define DEFAULT_TIMEOUT_MS 30000.0
#define REPLY_MAGIC "PCR1 "
#define IN_FALLBACK_ENV "PORTICO_CNI_IN_FALLBACK"

extern char **environ;

/* ---------------------------------------------------------------------------------------------------
 * Small growable byte buffer. Allocation failure is reported to the caller (which falls back).
 */
struct buf {
    char *data;
    size_t len, cap;
    int oom;   /* an allocation failed: the content is incomplete (every later add fails too) */
};

static int buf_reserve(struct buf *b, size_t extra) {
    if (b->oom) return -1;
    if (extra > SIZE_MAX - b->len) { b->oom = 1; return -1; }
    size_t need = b->len + extra;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) { cap = need; break; }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) { b->oom = 1; return -1; }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_add(struct buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int buf_addc(struct buf *b, char c) { return buf_add(b, &c, 1); }

static int buf_adds(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

static void buf_free(struct buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Process state: what the fallback needs to run the Node plugin as if it had been called directly.
 */
enum stdin_state {
    STDIN_WHOLE,     /* all of stdin is in g_in */
    STDIN_PARTIAL,   /* g_in holds the first MAX_STDIN bytes; the rest is still on fd 0 */
    STDIN_UNREAD,    /* reading failed before anything was read: fd 0 is left as it is */
};

static char **g_argv;
static struct buf g_in;
static enum stdin_state g_stdin = STDIN_UNREAD;
static int g_debug;

static void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void debug(const char *fmt, ...) {
    if (!g_debug) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    ssize_t w;
    do w = write(2, line, len); while (w < 0 && errno == EINTR);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wait until fd is ready for `events`, or the deadline (ms on now_ms()'s clock; < 0: none). 1 ready, 0 late, -1 error. */
static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        int timeout = -1;
        if (deadline >= 0) {
            double left = deadline - now_ms();
            if (left <= 0) return 0;
            timeout = left >= INT_MAX ? INT_MAX : (int)left + 1;   /* rounded up: never wake early */
        }
        struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
        int r = poll(&p, 1, timeout);
        if (r > 0) return 1;   /* readable, writable, or an error/hang-up the next call will report */
        if (r == 0) {
            if (deadline >= 0) continue;   /* re-check the clock */
            return 0;
        }
        if (errno != EINTR) return -1;
    }
}

/* Write all of p to fd (partial writes, EINTR, a non-blocking fd). 0, or -1 with errno. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, -1) < 0) return -1;
        } else {
            if (w == 0) errno = EIO;
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * The fallback: run the Node plugin.
 */
static void json_escape_into(struct buf *b, const char *s, size_t n);
static void utf8_sanitize(char *s);

/* The exec failed too: the CNI error ourselves (code 11: the runtime may retry), exit 1. */
static _Noreturn void give_up(const char *path, const char *why, int err) {
    /* Nothing is exec'd from here on: a closed stdout or stderr is an EPIPE (exit 1), not a death by
     * SIGPIPE. (Not earlier: an ignored SIGPIPE would be inherited by the Node plugin across execve.) */
    signal(SIGPIPE, SIG_IGN);
    struct buf out = { 0 };
    char details[512];
    snprintf(details, sizeof details, "%s; cannot run the Node plugin %s: %s", why, path, strerror(err));
    utf8_sanitize(details);   /* a path that is not UTF-8, or one cut in the middle of a character */
    int ok = buf_adds(&out, "{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"portico-cni cannot reach the Portico daemon and cannot run its Node plugin\",\"details\":\"") == 0;
    if (ok) {
        json_escape_into(&out, details, strlen(details));
        ok = buf_adds(&out, "\"}\n") == 0 && !out.oom;
    }
    const char *cmd = getenv("CNI_COMMAND");
    char line[1024];
    int n = snprintf(line, sizeof line, "portico-cni: %s: cannot run the Node plugin (%s)\n", cmd ? cmd : "?", details);
    if (n > 0) (void)write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    if (ok) {
        (void)write_all(1, out.data, out.len);
    } else {
        static const char plain[] = "{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"portico-cni cannot run its Node plugin\"}\n";
        (void)write_all(1, plain, sizeof plain - 1);
    }
    _exit(1);
}

/* Put the stdin content back on fd 0 (a memfd, or an unnamed temp file), with what is still unread. */
static int refeed_stdin(void) {
    if (g_stdin == STDIN_UNREAD) return 0;
    int fd = memfd_create("portico-cni-stdin", MFD_CLOEXEC);
    if (fd < 0) fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    if (write_all(fd, g_in.data ? g_in.data : "", g_in.len) < 0) goto fail;
    if (g_stdin == STDIN_PARTIAL) {
        char chunk[65536];
        for (;;) {
            ssize_t r = read(0, chunk, sizeof chunk);
            if (r > 0) {
                if (write_all(fd, chunk, (size_t)r) < 0) goto fail;
            } else if (r == 0) {
                break;
            } else if (errno == EINTR) {
                continue;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_fd(0, POLLIN, -1) < 0) goto fail;
            } else {
                goto fail;
            }
        }
    }
    if (lseek(fd, 0, SEEK_SET) != 0) goto fail;
    if (dup2(fd, 0) < 0) goto fail;
    close(fd);
    return 0;
fail:
    close(fd);
    return -1;
}

static _Noreturn void fall_back(const char *why) {
    const char *env = getenv("PORTICO_CNI_FALLBACK");
    const char *path = env && *env ? env : PORTICO_CNI_FALLBACK_PATH;
    debug("portico-cni: relay: %s: running %s\n", why, path);
    if (getenv(IN_FALLBACK_ENV)) give_up(path, why, ELOOP);   /* the fallback is this relay again */
    if (refeed_stdin() < 0) give_up(path, why, errno);
    if (setenv(IN_FALLBACK_ENV, "1", 1) < 0) give_up(path, why, errno);
    char *none[] = { (char *)path, NULL };
    char **argv = g_argv && g_argv[0] ? g_argv : none;
    execve(path, argv, environ);
    give_up(path, why, errno);
}

/* ---------------------------------------------------------------------------------------------------
 * Input: stdin (bounded), UTF-8 validation, JSON escaping.
 */
static void read_stdin(void) {
    for (;;) {
        if (g_in.len >= MAX_STDIN) {
            g_stdin = STDIN_PARTIAL;
            return;
        }
        if (buf_reserve(&g_in, 65536) < 0) {
            g_stdin = g_in.len ? STDIN_PARTIAL : STDIN_UNREAD;
            fall_back("out of memory reading stdin");
        }
        size_t room = g_in.cap - g_in.len;
        if (room > MAX_STDIN - g_in.len) room = MAX_STDIN - g_in.len;
        ssize_t r = read(0, g_in.data + g_in.len, room);
        if (r > 0) {
            g_in.len += (size_t)r;
            g_stdin = STDIN_PARTIAL;   /* until EOF */
        } else if (r == 0) {
            g_stdin = STDIN_WHOLE;
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(0, POLLIN, -1) < 0) fall_back("cannot wait for stdin");
        } else {
            /* What was read goes back on fd 0 with the rest; nothing read: fd 0 as it is. */
            g_stdin = g_in.len ? STDIN_PARTIAL : STDIN_UNREAD;
            fall_back("cannot read stdin");
        }
    }
}

/* The length of the strict UTF-8 sequence at s (n bytes left), or 0 if there is none there. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF): what node decodes unchanged. */
static int valid_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(s + i, n - i);
        if (!len) return 0;
        i += len;
    }
    return 1;
}

/* Replace, in place, every byte of s that is not part of valid UTF-8 by '?' (for messages we print). */
static void utf8_sanitize(char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (!len) { s[i++] = '?'; continue; }
        i += len;
    }
}

/* Append s as the inside of a JSON string: quote, backslash and control characters escaped, the rest as is. */
static void json_escape_into(struct buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        char u[7];
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        default:
            if (c < 0x20) {
                u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0'; u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = 0;
                e = u;
            }
        }
        if (e) buf_adds(b, e);
        else buf_addc(b, (char)c);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * A small, strict JSON scanner: it validates the whole text and picks out the string value of `socket`
 * in the top-level `ipam` object, with JSON.parse's rule for repeated keys (the last one wins). Keys
 * are compared decoded (`"ip\u0061m"` is `ipam`).
 */
enum sock_kind { SOCK_NONE, SOCK_STRING, SOCK_UNUSABLE };

struct scan {
    const unsigned char *p, *end;
    enum sock_kind sock;      /* ipam.socket as the last top-level "ipam" has it */
    struct buf path;          /* its decoded value when SOCK_STRING */
};

static void skip_ws(struct scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int hex4(const unsigned char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(struct buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
    else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
    buf_add(b, u, n);
}

/*
 * A string at s->p (on its opening quote). With `out`, its decoded UTF-8 value is appended there and
 * *clean says whether that value is faithful (no lone surrogate, no NUL, no allocation failure).
 * 0, or -1 when it is not a valid JSON string.
 */
static int scan_string(struct scan *s, struct buf *out, int *clean) {
    s->p++;   /* the quote */
    for (;;) {
        if (s->p >= s->end) return -1;
        unsigned char c = *s->p;
        if (c == '"') { s->p++; break; }
        if (c < 0x20) return -1;
        if (c != '\\') {
            const unsigned char *run = s->p;
            while (s->p < s->end && *s->p != '"' && *s->p != '\\' && *s->p >= 0x20) s->p++;
            if (out) buf_add(out, run, (size_t)(s->p - run));
            continue;
        }
        if (s->end - s->p < 2) return -1;
        c = s->p[1];
        s->p += 2;
        char simple = 0;
        switch (c) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': break;
        default: return -1;
        }
        if (simple) {
            if (out) buf_addc(out, simple);
            continue;
        }
        uint32_t u;
        if (s->end - s->p < 4 || hex4(s->p, &u) < 0) return -1;
        s->p += 4;
        if (u >= 0xD800 && u <= 0xDBFF && s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u') {
            uint32_t lo;
            if (hex4(s->p + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                s->p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
        }
        if (!out) continue;
        if ((u >= 0xD800 && u <= 0xDFFF) || u == 0) *clean = 0;   /* a lone surrogate or NUL: not a path we pass on */
        else put_utf8(out, u);
    }
    return 0;
}

static int scan_number(struct scan *s) {
    const unsigned char *p = s->p, *e = s->end;
    if (p < e && *p == '-') p++;
    if (p >= e) return -1;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
    else return -1;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return -1;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return -1;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    s->p = p;
    return 0;
}

static int scan_literal(struct scan *s, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return -1;
    s->p += n;
    return 0;
}

/* Where in the document a value is: what to pick out of the object there. */
enum level { OTHER, TOP, IPAM };

static int scan_value(struct scan *s, int depth, enum level where);

/* An object at s->p; at TOP the "ipam" members are looked into, in IPAM the "socket" members. */
static int scan_object(struct scan *s, int depth, enum level where) {
    s->p++;   /* { */
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') { s->p++; return 0; }
    struct buf key = { 0 };
    int rc = -1;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"') goto out;
        key.len = 0;
        int clean = 1;
        if (scan_string(s, where == OTHER ? NULL : &key, &clean) < 0 || key.oom) goto out;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') goto out;
        s->p++;
        skip_ws(s);
        int is = clean && where != OTHER && key.data != NULL;
        if (is && where == TOP && key.len == 4 && memcmp(key.data, "ipam", 4) == 0) {
            s->sock = SOCK_NONE;   /* a later "ipam" replaces an earlier one */
            if (s->p < s->end && *s->p == '{') {
                if (depth + 1 > MAX_JSON_DEPTH || scan_object(s, depth + 1, IPAM) < 0) goto out;
            } else if (scan_value(s, depth + 1, OTHER) < 0) {
                goto out;
            }
        } else if (is && where == IPAM && key.len == 6 && memcmp(key.data, "socket", 6) == 0) {
            if (s->p < s->end && *s->p == '"') {
                s->path.len = 0;
                int ok = 1;
                if (scan_string(s, &s->path, &ok) < 0 || s->path.oom) goto out;
                s->sock = ok && s->path.len > 0 && s->path.data != NULL ? SOCK_STRING : SOCK_UNUSABLE;
            } else {
                if (scan_value(s, depth + 1, OTHER) < 0) goto out;
                s->sock = SOCK_UNUSABLE;
            }
        } else if (scan_value(s, depth + 1, OTHER) < 0) {
            goto out;
        }
        skip_ws(s);
        if (s->p >= s->end) goto out;
        if (*s->p == ',') { s->p++; continue; }
        if (*s->p == '}') { s->p++; rc = 0; goto out; }
        goto out;
    }
out:
    buf_free(&key);
    return rc;
}

static int scan_array(struct scan *s, int depth) {
    s->p++;   /* [ */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') { s->p++; return 0; }
    for (;;) {
        skip_ws(s);
        if (scan_value(s, depth + 1, OTHER) < 0) return -1;
        skip_ws(s);
        if (s->p >= s->end) return -1;
        if (*s->p == ',') { s->p++; continue; }
        if (*s->p == ']') { s->p++; return 0; }
        return -1;
    }
}

static int scan_value(struct scan *s, int depth, enum level where) {
    if (depth > MAX_JSON_DEPTH) return -1;
    skip_ws(s);
    if (s->p >= s->end) return -1;
    switch (*s->p) {
    case '{': return scan_object(s, depth, where);
    case '[': return scan_array(s, depth);
    case '"': return scan_string(s, NULL, NULL);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default: return scan_number(s);
    }
}

/*
 * The whole document: 0 when it is valid JSON (or only whitespace: the daemon decides what that means),
 * with s->sock / s->path set; -1 when it is not.
 */
static int scan_document(struct scan *s) {
    skip_ws(s);
    if (s->p == s->end) return 0;
    if (scan_value(s, 0, TOP) < 0) return -1;
    skip_ws(s);
    return s->p == s->end ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------------
 * The exchange with the daemon.
 */

/* Is `name` one the daemon needs: CNI_* or PORTICO_IPAM_SOCKET? */
static int wanted_env(const char *entry, size_t name_len) {
    if (name_len >= 4 && memcmp(entry, "CNI_", 4) == 0) return 1;
    return name_len == 19 && memcmp(entry, "PORTICO_IPAM_SOCKET", 19) == 0;
}

/*
 * Is a CNI_* or PORTICO_* name in the environment twice? Then the relay and the Node plugin would not
 * see the same value: getenv() (and node itself) take the first entry, but the Node plugin is a shell
 * script (bin/portico-cni: `exec node`), and /bin/sh imports the environment entry by entry, so the
 * last one wins in what node gets. Which one depends on the shell; the relay lets the Node plugin
 * decide. (A runtime that appends CNI_COMMAND=... to its own environment without removing what it
 * inherited, as libcni's delegation did before dedupEnv, makes such an environment.)
 */
static int duplicate_env(void) {
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        size_t nlen = (size_t)(eq - *e);
        if (!(nlen >= 4 && memcmp(*e, "CNI_", 4) == 0) && !(nlen >= 8 && memcmp(*e, "PORTICO_", 8) == 0)) continue;
        for (char **f = environ; f < e; f++)
            if (strncmp(*f, *e, nlen + 1) == 0) return 1;
    }
    return 0;
}

/*
 * PORTICO_CNI_TIMEOUT_MS as a number of milliseconds both processes read alike: 0 and *ms set (unset:
 * the default), or -1. The Node plugin takes Number(value) and hands it to setTimeout, which runs
 * anything that is not a number from 1 to 2^31-1 (NaN from "abc", 0 from "", 1e10, ...) after 1 ms:
 * it then all but never hears the daemon in time. Only plain decimals in that range (what strtod and
 * Number read the same) are the relay's to use; for anything else the Node plugin runs.
 */
static int timeout_ms(double *ms) {
    const char *t = getenv("PORTICO_CNI_TIMEOUT_MS");
    *ms = DEFAULT_TIMEOUT_MS;
    if (!t) return 0;
    int dots = 0;
    if (*t < '0' || *t > '9') return -1;
    for (const char *c = t; *c; c++) {
        if (*c == '.') dots++;
        else if (*c < '0' || *c > '9') return -1;
    }
    if (dots > 1) return -1;
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (errno != 0 || *end != 0 || !(v >= 1 && v <= 2147483647.0)) return -1;
    *ms = v;
    return 0;
}

/* The relay request line, or a reason to fall back. */
static const char *build_request(struct buf *req) {
    if (buf_adds(req, "{\"relay\":1,\"env\":{") < 0) return "out of memory";
    int first = 1;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq) continue;
        size_t nlen = (size_t)(eq - *e);
        if (!wanted_env(*e, nlen)) continue;   /* (each name once: duplicate_env() in main) */
        const char *val = eq + 1;
        size_t vlen = strlen(val);
        if (!valid_utf8((const unsigned char *)*e, nlen) || !valid_utf8((const unsigned char *)val, vlen)) return "an environment variable is not UTF-8";
        if (!first) buf_addc(req, ',');
        first = 0;
        buf_addc(req, '"');
        json_escape_into(req, *e, nlen);
        buf_adds(req, "\":\"");
        json_escape_into(req, val, vlen);
        buf_addc(req, '"');
    }
    buf_adds(req, "},\"stdin\":\"");
    json_escape_into(req, g_in.data ? g_in.data : "", g_in.len);
    if (buf_adds(req, "\"}\n") < 0 || req->oom) return "out of memory";
    return NULL;
}

struct reply {
    int exit;
    size_t out_len, err_len;
    const char *out, *err;
};

/* Parse "PCR1 <exit> <out> <err>\n" at the start of b. 1 complete header (*hdr_len set), 0 need more, -1 not a relay reply. */
static int parse_header(const struct buf *b, struct reply *r, size_t *hdr_len) {
    size_t m = strlen(REPLY_MAGIC);
    size_t n = b->len < m ? b->len : m;
    if (memcmp(b->data, REPLY_MAGIC, n) != 0) return -1;
    if (b->len < m) return 0;
    unsigned long long v[3] = { 0, 0, 0 };
    size_t i = m;
    for (int k = 0; k < 3; k++) {
        size_t start = i;
        while (i < b->len && b->data[i] >= '0' && b->data[i] <= '9') {
            if (i - start >= 12) return -1;
            v[k] = v[k] * 10 + (unsigned long long)(b->data[i] - '0');
            i++;
        }
        if (i == b->len) return 0;
        if (i == start) return -1;
        if (b->data[i] != (k < 2 ? ' ' : '\n')) return -1;
        i++;
    }
    if (v[0] > 255 || v[1] > MAX_REPLY_OUTPUT || v[2] > MAX_REPLY_OUTPUT - v[1]) return -1;
    r->exit = (int)v[0];
    r->out_len = (size_t)v[1];
    r->err_len = (size_t)v[2];
    *hdr_len = i;
    return 1;
}

/* Ask the daemon at `path`. NULL and *r filled (pointing into *in), or a reason to fall back. */
static const char *exchange(const char *path, double timeout, const struct buf *req, struct buf *in, struct reply *r, char *why, size_t why_len) {
    double deadline = now_ms() + timeout;

    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t plen = strlen(path);
    if (plen == 0) return "the socket path is empty";
    if (plen >= sizeof sa.sun_path) return "the socket path is too long for a unix socket";
    memcpy(sa.sun_path, path, plen + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(why, why_len, "socket: %s", strerror(errno));
        return why;
    }
    int rc;
    do rc = connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1));
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno == EINPROGRESS) {
        /* (not for unix sockets on Linux, but cheap to handle) */
        int w = wait_fd(fd, POLLOUT, deadline);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (w <= 0) { errno = w == 0 ? ETIMEDOUT : errno; rc = -1; }
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) rc = -1;
        else if (soerr) { errno = soerr; rc = -1; }
        else rc = 0;
    }
    if (rc < 0) {
        snprintf(why, why_len, "connect %s: %s", path, strerror(errno));
        close(fd);
        return why;
    }

    const char *fail = NULL;
    for (size_t off = 0; off < req->len;) {
        ssize_t w = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
        if (w > 0) { off += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int ready = wait_fd(fd, POLLOUT, deadline);
            if (ready > 0) continue;
            fail = ready == 0 ? "no answer in time (sending)" : "poll failed (sending)";
        } else {
            snprintf(why, why_len, "send: %s", strerror(w < 0 ? errno : EIO));
            fail = why;
        }
        break;
    }

    size_t hdr = 0;
    int have_header = 0;
    while (!fail) {
        if (!have_header && in->len > 0) {
            int h = parse_header(in, r, &hdr);
            if (h < 0) { fail = "the daemon's answer is not a relay reply (an older daemon?)"; break; }
            if (h > 0) have_header = 1;
        }
        if (have_header && in->len - hdr >= r->out_len + r->err_len) break;
        if (buf_reserve(in, have_header ? hdr + r->out_len + r->err_len - in->len : 4096) < 0) { fail = "out of memory"; break; }
        ssize_t n = recv(fd, in->data + in->len, in->cap - in->len, 0);
        if (n > 0) { in->len += (size_t)n; continue; }
        if (n == 0) { fail = "the daemon's answer was cut short"; break; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int ready = wait_fd(fd, POLLIN, deadline);
            if (ready > 0) continue;
            fail = ready == 0 ? "no answer in time" : "poll failed";
            break;
        }
        snprintf(why, why_len, "recv: %s", strerror(errno));
        fail = why;
    }
    close(fd);
    if (fail) return fail;
    r->out = in->data + hdr;
    r->err = in->data + hdr + r->out_len;
    return NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    g_argv = argv;
    g_debug = getenv("PORTICO_CNI_RELAY_DEBUG") && strcmp(getenv("PORTICO_CNI_RELAY_DEBUG"), "1") == 0;

    /* What the Node plugin might read otherwise than the relay: it runs, on stdin as it is. */
    if (duplicate_env()) fall_back("a CNI_* or PORTICO_* variable is in the environment twice");
    double timeout;
    if (timeout_ms(&timeout) < 0) fall_back("PORTICO_CNI_TIMEOUT_MS is not a number of milliseconds from 1 to 2147483647");

    read_stdin();
    double t_read = now_ms();
    if (g_stdin != STDIN_WHOLE) fall_back("stdin is larger than the relay takes");
    if (!valid_utf8((const unsigned char *)(g_in.data ? g_in.data : ""), g_in.len)) fall_back("stdin is not UTF-8");

    struct scan s = { .p = (const unsigned char *)(g_in.data ? g_in.data : ""), .sock = SOCK_NONE, .path = { 0 } };
    s.end = s.p + g_in.len;
    if (scan_document(&s) < 0) fall_back("stdin is not JSON the relay can scan");
    if (s.sock == SOCK_UNUSABLE) fall_back("ipam.socket is not a usable path");
    const char *path;
    if (s.sock == SOCK_STRING) {
        if (buf_addc(&s.path, 0) < 0) fall_back("out of memory");
        path = s.path.data;
    } else {
        path = getenv("PORTICO_IPAM_SOCKET");
        if (!path) path = DEFAULT_SOCKET;
    }

    struct buf req = { 0 };
    const char *why = build_request(&req);
    if (why) fall_back(why);

    struct buf in = { 0 };
    struct reply r;
    char reason[512];
    why = exchange(path, timeout, &req, &in, &r, reason, sizeof reason);
    buf_free(&req);
    if (why) fall_back(why);

    /* The answer is ours to print: a closed stdout or stderr is an EPIPE from here on, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    int rc = r.exit;
    if (write_all(2, r.err, r.err_len) < 0) rc = 1;
    if (write_all(1, r.out, r.out_len) < 0) rc = 1;
    if (rc == 0 && r.exit == 0) {
        const char *timing = getenv("PORTICO_CNI_TIMING");
        if (timing && strcmp(timing, "1") == 0) {
            const char *cmd = getenv("CNI_COMMAND");
            char line[256];
            int n = snprintf(line, sizeof line, "portico-cni: timing %s %.3f\n", cmd ? cmd : "", now_ms() - t_read);
            if (n > 0) (void)write_all(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        }
    }
    buf_free(&in);
    buf_free(&s.path);
    buf_free(&g_in);
    return rc;
}
