/*
 * weavets-cni fast path: a CNI plugin binary that starts in a millisecond.
 *
 * A CNI ADD is on the critical path of every container start, and starting Node alone
 * costs more than the reference plugins take for the whole job. So this small program
 * does no CNI logic at all: it forwards the invocation (the CNI_* environment and the
 * configuration on stdin) to the weavets daemon, which runs the plugin logic written in
 * TypeScript (src/cni), and prints what the daemon answers. The protocol:
 *
 *   POST /cni  {"env": {"CNI_COMMAND": ..., ...}, "stdin": "<configuration>"}
 *   200, header x-cni-exit: N, body: the plugin's stdout   ->  print body, exit N
 *
 * When the daemon cannot be reached (not running, an old daemon without /cni), the
 * invocation is handed, unchanged, to the Node plugin (dist/cni/main.js), which answers
 * VERSION itself and reports "try again later" (code 11) properly. Where that Node plugin
 * lives is read from <dir of this binary>/weavets-cni.fallback: two lines, the node
 * executable and the plugin's main.js (written by `weavets setup-cni`).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_STDIN (1 << 20)
#define MAX_RESPONSE (4 << 20)
#define DEFAULT_STATE_DIR "/var/lib/weavets"

static const char *const FORWARDED_ENV[] = {
    "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "WEAVETS_CNI_LOG_LEVEL", NULL,
};

struct buf {
  char *data;
  size_t len;
  size_t cap;
};

static int buf_reserve(struct buf *b, size_t more) {
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

static int buf_add(struct buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n)) return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

/* Append s as a JSON string literal. Bytes >= 0x80 pass through: the input is UTF-8. */
static int buf_json(struct buf *b, const char *s, size_t n) {
  if (buf_str(b, "\"")) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      if (buf_add(b, esc, 2)) return -1;
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      if (buf_add(b, esc, 6)) return -1;
    } else if (buf_add(b, (const char *)&s[i], 1)) {
      return -1;
    }
  }
  return buf_str(b, "\"");
}

static int read_all(int fd, struct buf *b, size_t limit) {
  for (;;) {
    if (buf_reserve(b, 65536)) return -1;
    ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) return 0;
    b->len += (size_t)n;
    if (b->len > limit) return -1;
  }
}

/*
 * The configuration's "stateDir", if it is a plain string (no escapes): that is where the
 * daemon's socket is. Anything unusual falls back to the Node plugin, which parses JSON
 * for real, so this scan never has to be clever.
 */
static int find_state_dir(const char *conf, size_t len, char *out, size_t outsz, int *unusual) {
  static const char key[] = "\"stateDir\"";
  *unusual = 0;
  const char *p = memmem(conf, len, key, sizeof key - 1);
  if (!p) return 0;
  const char *end = conf + len;
  p += sizeof key - 1;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  if (p >= end || *p != ':') return (*unusual = 1), 0;
  p++;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  if (p >= end || *p != '"') return (*unusual = 1), 0;
  p++;
  const char *q = p;
  while (q < end && *q != '"' && *q != '\\') q++;
  if (q >= end || *q != '"' || (size_t)(q - p) >= outsz || q == p) return (*unusual = 1), 0;
  memcpy(out, p, (size_t)(q - p));
  out[q - p] = 0;
  return 1;
}

/* Hand the invocation to the Node plugin, with the configuration back on stdin. */
static void fallback(const struct buf *conf) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 32);
  char node[4096] = "", mainjs[4096] = "";
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) {
      strcpy(slash + 1, "weavets-cni.fallback");
      FILE *f = fopen(exe, "r");
      if (f) {
        if (fgets(node, sizeof node, f) && fgets(mainjs, sizeof mainjs, f)) {
          node[strcspn(node, "\n")] = 0;
          mainjs[strcspn(mainjs, "\n")] = 0;
        }
        fclose(f);
      }
    }
  }
  if (!node[0] || !mainjs[0]) {
    /* No Node plugin to defer to: answer like it would, as a CNI error. */
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"weavets daemon unreachable and no fallback plugin installed (weavets-cni.fallback missing); run weavets setup-cni\"}\n");
    exit(1);
  }
  int fd = memfd_create("weavets-cni-stdin", 0);
  if (fd < 0 || write(fd, conf->data, conf->len) != (ssize_t)conf->len || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
    fprintf(stderr, "weavets-cni: cannot hand over to %s: %s\n", mainjs, strerror(errno));
    exit(1);
  }
  char *const argv[] = {node, mainjs, NULL};
  execv(node, argv);
  fprintf(stderr, "weavets-cni: cannot run %s: %s\n", node, strerror(errno));
  exit(1);
}

int main(void) {
  struct buf conf = {0};
  if (read_all(0, &conf, MAX_STDIN)) {
    fprintf(stderr, "weavets-cni: cannot read the configuration from stdin\n");
    fallback(&conf);
  }
  char state_dir[3072] = DEFAULT_STATE_DIR;
  int unusual = 0;
  find_state_dir(conf.data ? conf.data : "", conf.len, state_dir, sizeof state_dir, &unusual);
  if (unusual) fallback(&conf);

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/weavets.sock", state_dir) >= sizeof addr.sun_path) fallback(&conf);

  struct buf body = {0};
  buf_str(&body, "{\"env\":{");
  int first = 1;
  for (const char *const *k = FORWARDED_ENV; *k; k++) {
    const char *v = getenv(*k);
    if (!v) continue;
    if (!first) buf_str(&body, ",");
    first = 0;
    buf_json(&body, *k, strlen(*k));
    buf_str(&body, ":");
    buf_json(&body, v, strlen(v));
  }
  buf_str(&body, "},\"stdin\":");
  buf_json(&body, conf.data ? conf.data : "", conf.len);
  if (buf_str(&body, "}")) fallback(&conf);

  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) fallback(&conf);

  char head[256];
  int hl = snprintf(head, sizeof head,
                    "POST /cni HTTP/1.0\r\nHost: weavets\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                    body.len);
  struct buf req = {0};
  buf_add(&req, head, (size_t)hl);
  if (buf_add(&req, body.data, body.len)) fallback(&conf);
  for (size_t off = 0; off < req.len;) {
    ssize_t n = write(s, req.data + off, req.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fallback(&conf);
    off += (size_t)n;
  }

  struct buf resp = {0};
  if (read_all(s, &resp, MAX_RESPONSE) || resp.len < 12 || buf_add(&resp, "", 1)) fallback(&conf);
  resp.len--; /* the NUL added above is not part of the response */
  int status = atoi(resp.data + 9);
  char *sep = strstr(resp.data, "\r\n\r\n");
  char *exit_hdr = strcasestr(resp.data, "\r\nx-cni-exit:");
  if (status != 200 || !sep || !exit_hdr || exit_hdr > sep) fallback(&conf); /* an older daemon: no /cni */
  int code = atoi(exit_hdr + strlen("\r\nx-cni-exit:"));
  char *out = sep + 4;
  size_t outlen = resp.len - (size_t)(out - resp.data);
  if (outlen && fwrite(out, 1, outlen, stdout) != outlen) return 1;
  return code;
}
