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
#include <limits.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_STDIN (1 << 20)
#define MAX_RESPONSE (4 << 20)
#define DEFAULT_STATE_DIR "/var/lib/weavets"

static const char *const FORWARDED_ENV[] = {
    "CNI_COMMAND", "CNI_CONTAINERID",       "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS",
    "CNI_PATH",    "WEAVETS_CNI_LOG_LEVEL", NULL,
};

struct buf {
  char *data;
  size_t len;
  size_t cap;
};

static int buf_reserve(struct buf *b, size_t more) {
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more)
    cap *= 2;
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

static int buf_str(struct buf *b, const char *s) {
  return buf_add(b, s, strlen(s));
}

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
 * Finding the configuration's top-level "stateDir" (that is where the daemon's socket is)
 * without a JSON library: a scanner that walks the top-level object's members and skips
 * every value whole, so a "stateDir" nested anywhere (in "args", which a meta-plugin may
 * fill from a pod annotation) is never taken. Anything it does not have to understand
 * (escapes in a key or in the stateDir value, a duplicate key, a non-string stateDir,
 * malformed JSON) is "unusual": the invocation goes to the Node plugin, which parses JSON
 * for real and applies the same rules, so this scan never has to be clever.
 */
static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* p at '"': the end of the string literal, or NULL. *escaped: it held a backslash. */
static const char *skip_string(const char *p, const char *end, int *escaped) {
  *escaped = 0;
  for (p++; p < end; p++) {
    if (*p == '\\') {
      *escaped = 1;
      if (++p >= end) return NULL;
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return NULL;
}

/* Any JSON value at p: the end of it, or NULL. Objects and arrays by bracket depth. */
static const char *skip_value(const char *p, const char *end) {
  int escaped;
  if (p >= end) return NULL;
  if (*p == '"') return skip_string(p, end, &escaped);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        p = skip_string(p, end, &escaped);
        if (!p) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[')
        depth++;
      else if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      p++;
    }
    return NULL;
  }
  const char *q = p;
  while (q < end && !strchr(",}] \t\r\n", *q))
    q++;
  return q == p ? NULL : q;
}

/* 1 with the top-level "stateDir" in out, 0 when there is none; *unusual as above. */
static int find_state_dir(const char *conf, size_t len, char *out, size_t outsz, int *unusual) {
  static const char key[] = "stateDir";
  const char *p = conf, *end = conf + len;
  int found = 0, escaped;
  *unusual = 0;
  p = skip_ws(p, end);
  if (p >= end) return 0; /* no configuration at all: the daemon answers that */
  if (*p != '{') return (*unusual = 1), 0;
  p = skip_ws(p + 1, end);
  if (p < end && *p == '}') return 0;
  for (;;) {
    if (p >= end || *p != '"') return (*unusual = 1), 0;
    const char *k = p + 1;
    p = skip_string(p, end, &escaped);
    if (!p || escaped) return (*unusual = 1), 0;
    int is_state_dir = (size_t)(p - 1 - k) == sizeof key - 1 && memcmp(k, key, sizeof key - 1) == 0;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return (*unusual = 1), 0;
    p = skip_ws(p + 1, end);
    if (is_state_dir) {
      if (found || p >= end || *p != '"') return (*unusual = 1), 0;
      const char *v = p + 1;
      p = skip_string(p, end, &escaped);
      if (!p || escaped || p - 1 == v || (size_t)(p - 1 - v) >= outsz) return (*unusual = 1), 0;
      memcpy(out, v, (size_t)(p - 1 - v));
      out[p - 1 - v] = 0;
      found = 1;
    } else {
      p = skip_value(p, end);
      if (!p) return (*unusual = 1), 0;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') {
      p = skip_ws(p + 1, end);
      continue;
    }
    if (p < end && *p == '}') return found;
    return (*unusual = 1), 0;
  }
}

/*
 * Whoever controls the socket's directory controls what this plugin talks to, so before
 * connecting: the state dir's real path, every directory on it owned by root and
 * writable by no one else (a sticky directory such as /tmp is fine above the state dir),
 * and the socket, if present, a socket owned by root that no one else may write. We then
 * connect by the checked real path, so a symlink swapped afterwards changes nothing.
 * Returns NULL when trusted (or absent: connecting then fails and the Node plugin says
 * the daemon is not running), else what is wrong, in `why`.
 */
static const char *untrusted(const char *state_dir, char *resolved, char *why, size_t whysz) {
  if (!realpath(state_dir, resolved)) {
    if (errno != ENOENT && errno != ENOTDIR)
      return snprintf(why, whysz, "cannot resolve %s: %s", state_dir, strerror(errno)), why;
    snprintf(resolved, PATH_MAX, "%s", state_dir);
    return NULL;
  }
  size_t n = strlen(resolved);
  char prefix[PATH_MAX];
  /* "/", then every longer prefix that ends where a component ends; the last is the state dir. */
  for (size_t i = 0; i <= n; i++) {
    size_t plen = i == 0 ? 1 : i;
    if (i > 0 && i < n && resolved[i] != '/') continue;
    if (i == n && n == 1) break; /* the state dir is "/" itself, checked at i == 0 */
    int last = i == n || n == 1;
    memcpy(prefix, resolved, plen);
    prefix[plen] = 0;
    struct stat st;
    if (lstat(prefix, &st) != 0)
      return snprintf(why, whysz, "cannot inspect %s: %s", prefix, strerror(errno)), why;
    if (st.st_uid != 0)
      return snprintf(why, whysz, "%s is owned by uid %u, not root", prefix, (unsigned)st.st_uid),
             why;
    if ((st.st_mode & 022) && (last || !(st.st_mode & S_ISVTX)))
      return snprintf(why, whysz, "%s is writable by group or others (mode %04o)", prefix,
                      (unsigned)(st.st_mode & 07777)),
             why;
  }
  char sock[PATH_MAX + 16];
  snprintf(sock, sizeof sock, "%s/weavets.sock", resolved);
  struct stat st;
  if (lstat(sock, &st) != 0) return NULL;
  if (!S_ISSOCK(st.st_mode)) return snprintf(why, whysz, "%s is not a socket", sock), why;
  if (st.st_uid != 0)
    return snprintf(why, whysz, "%s is owned by uid %u, not root", sock, (unsigned)st.st_uid), why;
  if (st.st_mode & 022)
    return snprintf(why, whysz, "%s is writable by group or others (mode %04o)", sock,
                    (unsigned)(st.st_mode & 07777)),
           why;
  return NULL;
}

/*
 * Hand the invocation to the Node plugin, with the configuration back on stdin. `refused`:
 * why the state dir was not trusted (the Node plugin finds the same and says it as a CNI
 * error); used for our own answer only when there is no Node plugin to defer to.
 */
static void fallback_refused(const struct buf *conf, const char *state_dir, const char *refused) {
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
    if (refused) {
      struct buf msg = {0}, text = {0};
      buf_str(&text, "refusing stateDir ");
      buf_str(&text, state_dir);
      buf_str(&text, ": ");
      buf_str(&text, refused);
      buf_str(
          &text,
          "; the daemon's state dir and socket must be owned by root and writable by no one else");
      buf_str(&msg, "{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":");
      if (text.data) buf_json(&msg, text.data, text.len);
      buf_str(&msg, "}\n");
      if (msg.data) fwrite(msg.data, 1, msg.len, stdout);
      exit(1);
    }
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"weavets daemon unreachable and no "
           "fallback plugin installed (weavets-cni.fallback missing); run weavets setup-cni\"}\n");
    exit(1);
  }
  int fd = memfd_create("weavets-cni-stdin", 0);
  if (fd < 0 || write(fd, conf->data, conf->len) != (ssize_t)conf->len ||
      lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
    fprintf(stderr, "weavets-cni: cannot hand over to %s: %s\n", mainjs, strerror(errno));
    exit(1);
  }
  char *const argv[] = {node, mainjs, NULL};
  execv(node, argv);
  fprintf(stderr, "weavets-cni: cannot run %s: %s\n", node, strerror(errno));
  exit(1);
}

static void fallback(const struct buf *conf) {
  fallback_refused(conf, NULL, NULL);
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

  /* An untrusted socket: the Node plugin refuses it too, as a proper CNI error. */
  char resolved[PATH_MAX], why[PATH_MAX + 128];
  if (untrusted(state_dir, resolved, why, sizeof why)) {
    fprintf(stderr, "weavets-cni: refusing state dir %s: %s\n", state_dir, why);
    fallback_refused(&conf, state_dir, why);
  }

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/weavets.sock", resolved) >=
      sizeof addr.sun_path)
    fallback(&conf);

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
                    "POST /cni HTTP/1.0\r\nHost: weavets\r\nContent-Type: "
                    "application/json\r\nContent-Length: %zu\r\n\r\n",
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
  if (status != 200 || !sep || !exit_hdr || exit_hdr > sep)
    fallback(&conf); /* an older daemon: no /cni */
  int code = atoi(exit_hdr + strlen("\r\nx-cni-exit:"));
  char *out = sep + 4;
  size_t outlen = resp.len - (size_t)(out - resp.data);
  if (outlen && fwrite(out, 1, outlen, stdout) != outlen) return 1;
  return code;
}
