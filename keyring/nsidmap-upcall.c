/*
 * nsidmap-upcall — the program /sbin/request-key runs for `id_resolver` (NFSv4) and `cifs.idmap`
 * (SMB) keys. Thin on purpose: it forwards the key description to nsidmapd's admin socket and
 * applies the one decision the daemon returns (src/responders/keyring/upcall.ts, decideUpcall).
 * It never maps anything itself, so the answer is the same whichever path produced it.
 *
 *   nsidmap-upcall [--socket PATH] [--policy FILE] [--timeout-ms N] nfs|cifs <key-serial>
 *   nsidmap-upcall [--socket PATH] [--timeout-ms N] --dry-run nfs|cifs <description>
 *
 * The first form is what the request-key.d rules run (keyring/request-key.d/nsidmap.conf); the
 * protocol is an argument, not the key's type, so tests can drive it from rules on `user` keys.
 * The second asks the daemon and prints the decision without touching any key: a way to time the
 * helper's own part of an upcall, and to check the daemon's answers from a shell.
 *
 * If the daemon cannot be asked (no socket, nobody listening, no permission, no answer in time)
 * the helper execs the in-process fallback, dist/keyring/upcall.js under node, which runs the same
 * decision function; exec keeps the assumed authority (it lives in the task's credentials), so the
 * fallback can still instantiate. NODE and the fallback path are absolute, compiled in by
 * scripts/build-upcall.sh: request-key runs helpers with PATH=/sbin:/bin:/usr/sbin:/usr/bin and
 * HOME=/, where `#!/usr/bin/env node` finds no node installed by nvm or in /usr/local.
 *
 * Whatever happens, the key leaves this program instantiated, negated or rejected — or handed to
 * the fallback, which promises the same. A key left uninstantiated would be negated by the kernel
 * for a fixed 60 s (security/keys/request_key.c, call_sbin_request_key → key_negate_and_link).
 *
 * Only libc: keyctl(2) through syscall(2), as libkeyutils may be absent where this is installed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#if !defined(NSIDMAP_NODE) || !defined(NSIDMAP_FALLBACK)
#error "build with scripts/build-upcall.sh: it defines NSIDMAP_NODE and NSIDMAP_FALLBACK as absolute paths"
#endif

/* include/uapi/linux/keyctl.h: defined here so that no kernel or keyutils header is needed. */
#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_DESCRIBE 6
#define KEYCTL_CLEAR 7
#define KEYCTL_INSTANTIATE 12
#define KEYCTL_NEGATE 13
#define KEYCTL_SET_TIMEOUT 15
#define KEYCTL_REJECT 19
#define KEY_SPEC_REQKEY_AUTH_KEY (-7)

#define DEFAULT_SOCKET "/run/nsidmap/admin.sock"
#define DEFAULT_TIMEOUT_MS 2000
/* Seconds a key stays negative when this program itself failed: short, so a fix takes effect. */
#define ERROR_TIMEOUT 5
/* how long an empty description stays rejected (src/responders/keyring/upcall.ts REJECT_TIMEOUT) */
#define REJECT_TIMEOUT 60
/* security/keys/internal.h: KEY_MAX_DESC_SIZE 4096, NUL included. */
#define MAX_DESC 4095
/* The largest payload accepted from the daemon, with room to spare: a wire name is at most 128
 * bytes (IDMAP_NAMESZ, include/uapi/linux/nfs_idmap.h), a binary SID 68 (fs/smb/client/cifsacl.h). */
#define MAX_PAYLOAD 1024
/* A reply line: the daemon's reason may quote the description, JSON-escaped (6 bytes per byte). */
#define MAX_REPLY (64 * 1024)

enum proto { NFS, CIFS };
enum action { INSTANTIATE, NEGATE, REJECT };
/* How asking the daemon ended: an answer, nobody to ask (→ fallback), or a bad answer. */
enum asked { ANSWERED, UNREACHABLE, FAILED };

struct options {
	const char *socket;
	const char *policy;
	int timeout_ms;
	bool dry_run;
	enum proto proto;
	const char *proto_text;
	const char *target; /* the key serial, or with --dry-run the description */
};

struct reply {
	bool ok;
	enum action action;
	unsigned char payload[MAX_PAYLOAD];
	size_t payload_len;
	unsigned int timeout;
	/* spans in the reply line, still JSON-escaped: for logs only */
	const char *reason, *code;
	size_t reason_len, code_len;
};

static int32_t serial;
/* prefix of log lines: "key <serial>" once known */
static char who[32] = "nsidmap-upcall";
static bool to_stderr;

static const char *key_type(enum proto p) { return p == NFS ? "id_resolver" : "cifs.idmap"; }
/* The host-wide cache keyrings: fs/nfs/nfs4idmap.c (nfs_idmap_init), fs/smb/client/cifsacl.c (init_cifs_idmap). */
static const char *cache_keyring(enum proto p) { return p == NFS ? ".id_resolver" : ".cifs_idmap"; }

static long keyctl(int op, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
	return syscall(SYS_keyctl, op, a2, a3, a4, a5);
}

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int prio, const char *fmt, ...)
{
	int e = errno; /* for %m: vsyslog may change errno before stderr gets its copy */
	va_list ap;
	va_start(ap, fmt);
	vsyslog(prio, fmt, ap);
	va_end(ap);
	if (to_stderr) {
		errno = e;
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
}

/*
 * Printable copy for a log line: key descriptions come from any local user and may hold anything.
 * Control bytes, quotes, backslashes and bytes >= 0x80 become \xNN (a quote could otherwise fake
 * the end of a quoted field); a copy cut short ends in "...".
 */
static const char *printable(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0, i = 0;
	for (; i < n && o + 5 + 3 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"')
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	if (i < n && o + 3 < cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* ---- the key ---------------------------------------------------------------------------- */

static char describe_buf[MAX_DESC + 256];

/* KEYCTL_DESCRIBE gives `type;uid;gid;perm;description`; the description is all after the 4th `;`
 * and may contain `;` itself (security/keys/keyctl.c, keyctl_describe_key). */
static bool describe_key(const char **desc, size_t *len)
{
	long n = keyctl(KEYCTL_DESCRIBE, (unsigned long)serial, (unsigned long)describe_buf, sizeof describe_buf, 0);
	if (n < 0) {
		say(LOG_ERR, "%s: describe: %m", who);
		return false;
	}
	if (n == 0 || (size_t)n > sizeof describe_buf || describe_buf[n - 1] != '\0') {
		say(LOG_ERR, "%s: describe: unexpected answer of %ld bytes", who, n);
		return false;
	}
	const char *p = describe_buf;
	for (int i = 0; i < 4; i++) {
		p = strchr(p, ';');
		if (!p) {
			say(LOG_ERR, "%s: describe: fewer than 5 fields", who);
			return false;
		}
		p++;
	}
	*desc = p;
	*len = (size_t)(describe_buf + n - 1 - p);
	if (*len > MAX_DESC) { /* the kernel caps descriptions; request_buf is sized on that */
		say(LOG_ERR, "%s: describe: a description of %zu bytes", who, *len);
		return false;
	}
	return true;
}

/*
 * The requesting task's pid: only /proc/keys shows it, on the authorisation key's line
 * (`… .request_ key:<hex target> pid:<N> ci:<len>`, security/keys/request_key_auth.c). Any local
 * user can put a newline and a fake such line into a key description of their own, so only the
 * line whose serial column is the auth key we actually hold (KEY_SPEC_REQKEY_AUTH_KEY) counts.
 * Informational: 0 when not found; the daemon then describes the host.
 *
 * Costly: the kernel formats every key the reader may view up to that line, checking possession
 * of each (security/keys/proc.c) — ~50 µs with a handful of keys, ~2.7 µs more per key here, and
 * a busy NFS client holds hundreds to thousands of id_resolver keys. So it is read here only when
 * the daemon cannot read it itself (see requester()).
 */
static long requester_pid(long auth)
{
	if (auth <= 0)
		return 0;
	char want[16], key[32];
	snprintf(want, sizeof want, "%08x ", (unsigned int)auth);
	snprintf(key, sizeof key, " key:%x pid:", (unsigned int)serial);
	FILE *f = fopen("/proc/keys", "re");
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	long pid = 0;
	int lines = 0;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, want, 9) != 0)
			continue;
		/* a second line starting with our serial is someone's forgery (a description with a
		 * newline in a key the requester could show us): then nobody is named */
		if (++lines > 1) {
			pid = 0;
			break;
		}
		const char *k = strstr(line, key);
		if (k) {
			char *end;
			errno = 0;
			long v = strtol(k + strlen(key), &end, 10);
			if (errno == 0 && v > 0 && v <= INT_MAX && *end == ' ')
				pid = v;
		}
	}
	free(line);
	fclose(f);
	return pid;
}

/* Who asked, as the daemon is told: the pid, or the auth key whose /proc/keys line names it. */
struct requester {
	long pid;  /* > 0: read here */
	long auth; /* > 0: the daemon reads the pid itself, only if a log line or audit event needs it */
};

/*
 * The auth key is owned by the requester's fsuid (request_key_auth_new) and its owner may view
 * it. Every id_resolver and cifs.idmap upcall is asked with the kernel's own root credentials
 * (override_creds in fs/nfs/nfs4idmap.c and fs/smb/client/cifsacl.c), so the daemon, root, can
 * find the line itself, and does so only when a log line or audit event wants the requester: a
 * mapped answer (the common case) is not logged at the default level, and then nobody pays for
 * /proc/keys. A key requested by another user (rules on other key types, as in tests) is not
 * visible to the daemon: then the pid is read here, as before.
 */
static struct requester requester(void)
{
	struct requester q = { 0, 0 };
	long auth = keyctl(KEYCTL_GET_KEYRING_ID, (unsigned long)KEY_SPEC_REQKEY_AUTH_KEY, 0, 0, 0);
	if (auth <= 0)
		return q;
	char d[128]; /* `.request_key_auth;0;0;1b010000;<hex target>` */
	static const char ROOTS[] = ".request_key_auth;0;";
	long n = keyctl(KEYCTL_DESCRIBE, (unsigned long)auth, (unsigned long)d, sizeof d, 0);
	if (n > 0 && (size_t)n <= sizeof d && strncmp(d, ROOTS, sizeof ROOTS - 1) == 0)
		q.auth = auth;
	else
		q.pid = requester_pid(auth);
	return q;
}

/* ---- asking the daemon ------------------------------------------------------------------ */

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Errors that say "no daemon to ask here": fall back. */
static bool unreachable_errno(int e)
{
	return e == ENOENT || e == ECONNREFUSED || e == EACCES || e == EPERM || e == ENOTDIR ||
	       e == EAGAIN || e == ETIMEDOUT || e == EPIPE || e == ECONNRESET || e == ENOTSOCK ||
	       e == EPROTOTYPE || e == ELOOP || e == EINTR;
}

/* Connect with the deadline also bounding a full backlog: for AF_UNIX streams, connect() waits
 * for room up to SO_SNDTIMEO and then fails with EAGAIN (net/unix/af_unix.c, unix_wait_for_peer). */
static int connect_daemon(const char *path, int timeout_ms)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static const char HEX[] = "0123456789abcdef";

/* {"id":1,"op":"upcall","keyType":…,"descriptionHex":…,"pid":N | "authKey":A,"keySerial":K}\n
 * (src/responders/admin/protocol.ts). Hex: the description is bytes, maybe not UTF-8, and must
 * reach the daemon unaltered. */
static size_t build_request(char *out, size_t cap, enum proto p, const char *desc, size_t len, struct requester q)
{
	int n = snprintf(out, cap, "{\"id\":1,\"op\":\"upcall\",\"keyType\":\"%s\",\"descriptionHex\":\"", key_type(p));
	size_t o = (size_t)n;
	for (size_t i = 0; i < len; i++) {
		out[o++] = HEX[(unsigned char)desc[i] >> 4];
		out[o++] = HEX[(unsigned char)desc[i] & 15];
	}
	if (q.auth > 0)
		o += (size_t)snprintf(out + o, cap - o, "\",\"authKey\":%ld,\"keySerial\":%d}\n", q.auth, serial);
	else if (q.pid > 0)
		o += (size_t)snprintf(out + o, cap - o, "\",\"pid\":%ld}\n", q.pid);
	else
		o += (size_t)snprintf(out + o, cap - o, "\"}\n");
	return o;
}

static bool send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* Read one line before the deadline. 0: a line (NUL-terminated, newline removed); -1: no answer
 * (timeout, EOF, reset: errno says which); -2: longer than the buffer. */
static int read_line(int fd, char *buf, size_t cap, size_t *len, long long deadline)
{
	size_t have = 0;
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (have == cap - 1)
			return -2;
		ssize_t n = recv(fd, buf + have, cap - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = ECONNRESET; /* closed without an answer: as if it had gone away */
			return -1;
		}
		char *nl = memchr(buf + have, '\n', (size_t)n);
		have += (size_t)n;
		if (nl) {
			*nl = '\0';
			*len = (size_t)(nl - buf);
			return 0;
		}
	}
}

/* ---- the reply: a strict reader for the daemon's flat JSON ---------------------------------
 * {"id":1,"ok":true,"result":{"action":"instantiate","payload":"<hex>","timeout":600,…}}
 * {"id":1,"ok":true,"result":{"action":"negate"|"reject","timeout":60,"reason":"…"}}
 * {"id":1,"ok":false,"error":{"code":"NSIDMAP_E…","message":"…"}}
 * Unknown members of result/error are skipped (valid JSON only); anything else is refused. */

struct json {
	const char *p, *end;
};

static void ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool eat(struct json *j, char c)
{
	ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return true;
	}
	return false;
}

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* A string: its raw span between the quotes; *plain says whether it held no escape. */
static bool jstring(struct json *j, const char **s, size_t *n, bool *plain)
{
	if (!eat(j, '"'))
		return false;
	const char *start = j->p;
	bool esc = false;
	while (j->p < j->end && *j->p != '"') {
		unsigned char c = (unsigned char)*j->p;
		if (c < 0x20)
			return false;
		if (c == '\\') {
			esc = true;
			if (++j->p >= j->end)
				return false;
			if (*j->p == 'u') {
				for (int i = 0; i < 4; i++)
					if (++j->p >= j->end || !is_hex(*j->p))
						return false;
			} else if (*j->p == '\0' || !strchr("\"\\/bfnrt", *j->p)) {
				return false; /* strchr would find a NUL: the terminator */
			}
		}
		j->p++;
	}
	if (j->p >= j->end)
		return false;
	*s = start;
	*n = (size_t)(j->p - start);
	if (plain)
		*plain = !esc;
	j->p++;
	return true;
}

/* A non-negative integer with no fraction or exponent, at most `max`. */
static bool juint(struct json *j, unsigned long long max, unsigned long long *v)
{
	ws(j);
	const char *start = j->p;
	unsigned long long x = 0;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		if (j->p - start >= 15)
			return false;
		x = x * 10 + (unsigned long long)(*j->p - '0');
		j->p++;
	}
	size_t digits = (size_t)(j->p - start);
	if (digits == 0 || (digits > 1 && *start == '0') || x > max)
		return false;
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
		return false;
	*v = x;
	return true;
}

static bool jword(struct json *j, const char *w)
{
	ws(j);
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool jskip(struct json *j, int depth);

static bool jskip_number(struct json *j)
{
	ws(j);
	const char *p = j->p, *e = j->end;
	if (p < e && *p == '-')
		p++;
	if (p >= e || *p < '0' || *p > '9')
		return false;
	if (*p == '0')
		p++;
	else
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	if (p < e && *p == '.') {
		if (++p >= e || *p < '0' || *p > '9')
			return false;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || *p < '0' || *p > '9')
			return false;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	j->p = p;
	return true;
}

/* Skip one value of any kind, nested at most `depth` deep. */
static bool jskip(struct json *j, int depth)
{
	const char *s;
	size_t n;
	if (depth <= 0)
		return false;
	ws(j);
	if (j->p >= j->end)
		return false;
	switch (*j->p) {
	case '"':
		return jstring(j, &s, &n, NULL);
	case 't':
		return jword(j, "true");
	case 'f':
		return jword(j, "false");
	case 'n':
		return jword(j, "null");
	case '{':
	case '[': {
		char close = *j->p == '{' ? '}' : ']';
		bool obj = close == '}';
		j->p++;
		if (eat(j, close))
			return true;
		do {
			if (obj && (!jstring(j, &s, &n, NULL) || !eat(j, ':')))
				return false;
			if (!jskip(j, depth - 1))
				return false;
		} while (eat(j, ','));
		return eat(j, close);
	}
	default:
		return jskip_number(j);
	}
}

static bool key_is(const char *k, size_t n, const char *name) { return strlen(name) == n && memcmp(k, name, n) == 0; }

static int unhex(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* The members of "result". Known ones are checked for type; each may appear once. */
static bool jresult(struct json *j, struct reply *r)
{
	bool have_action = false, have_payload = false, have_timeout = false, have_reason = false;
	if (!eat(j, '{'))
		return false;
	if (eat(j, '}'))
		return false;
	do {
		const char *k, *s;
		size_t kn, n;
		bool plain;
		if (!jstring(j, &k, &kn, NULL) || !eat(j, ':'))
			return false;
		if (key_is(k, kn, "action")) {
			if (have_action || !jstring(j, &s, &n, &plain) || !plain)
				return false;
			if (key_is(s, n, "instantiate"))
				r->action = INSTANTIATE;
			else if (key_is(s, n, "negate"))
				r->action = NEGATE;
			else if (key_is(s, n, "reject"))
				r->action = REJECT;
			else
				return false;
			have_action = true;
		} else if (key_is(k, kn, "payload")) {
			if (have_payload || !jstring(j, &s, &n, &plain) || !plain || n == 0 || n % 2 || n / 2 > MAX_PAYLOAD)
				return false;
			for (size_t i = 0; i < n; i += 2) {
				if (!is_hex(s[i]) || !is_hex(s[i + 1]))
					return false;
				r->payload[i / 2] = (unsigned char)(unhex(s[i]) << 4 | unhex(s[i + 1]));
			}
			r->payload_len = n / 2;
			have_payload = true;
		} else if (key_is(k, kn, "timeout")) {
			unsigned long long t;
			/* key timeouts are unsigned int seconds (keyctl_set_timeout, keyctl_negate_key);
			 * 0 would mean "never expires": the daemon never asks for it (TTLs are >= 1 s) */
			if (have_timeout || !juint(j, UINT_MAX, &t) || t == 0)
				return false;
			r->timeout = (unsigned int)t;
			have_timeout = true;
		} else if (key_is(k, kn, "reason")) {
			if (have_reason || !jstring(j, &r->reason, &r->reason_len, NULL))
				return false;
			have_reason = true;
		} else if (!jskip(j, 4)) {
			return false;
		}
	} while (eat(j, ','));
	if (!eat(j, '}') || !have_action || !have_timeout)
		return false;
	/* a payload exactly when instantiating: never instantiate with bytes the daemon did not give */
	return have_payload == (r->action == INSTANTIATE);
}

static bool jerror(struct json *j, struct reply *r)
{
	if (!eat(j, '{'))
		return false;
	if (eat(j, '}'))
		return true;
	do {
		const char *k, *s;
		size_t kn, n;
		if (!jstring(j, &k, &kn, NULL) || !eat(j, ':'))
			return false;
		if (key_is(k, kn, "code")) {
			if (!jstring(j, &r->code, &r->code_len, NULL))
				return false;
		} else if (key_is(k, kn, "message")) {
			if (!jstring(j, &s, &n, NULL))
				return false;
			r->reason = s;
			r->reason_len = n;
		} else if (!jskip(j, 4)) {
			return false;
		}
	} while (eat(j, ','));
	return eat(j, '}');
}

static bool parse_reply(const char *line, size_t len, struct reply *r)
{
	struct json j = { line, line + len };
	bool have_id = false, have_ok = false, have_result = false, have_error = false;
	unsigned long long id = 0;
	memset(r, 0, sizeof *r);
	if (!eat(&j, '{'))
		return false;
	do {
		const char *k;
		size_t kn;
		if (!jstring(&j, &k, &kn, NULL) || !eat(&j, ':'))
			return false;
		if (key_is(k, kn, "id") && !have_id) {
			/* ours is 1; an error about a request the daemon could not read says 0 */
			if (!juint(&j, 1, &id))
				return false;
			have_id = true;
		} else if (key_is(k, kn, "ok") && !have_ok) {
			if (jword(&j, "true"))
				r->ok = true;
			else if (!jword(&j, "false"))
				return false;
			have_ok = true;
		} else if (key_is(k, kn, "result") && !have_result) {
			if (!jresult(&j, r))
				return false;
			have_result = true;
		} else if (key_is(k, kn, "error") && !have_error) {
			if (!jerror(&j, r))
				return false;
			have_error = true;
		} else {
			return false;
		}
	} while (eat(&j, ','));
	if (!eat(&j, '}'))
		return false;
	ws(&j);
	return j.p == j.end && have_id && have_ok &&
	       (r->ok ? id == 1 && have_result && !have_error : have_error && !have_result);
}

static char request_buf[2 * MAX_DESC + 256];
static char reply_buf[MAX_REPLY + 1];

static enum asked ask_daemon(const struct options *o, const char *desc, size_t len, struct requester q, struct reply *r)
{
	long long deadline = now_ms() + o->timeout_ms;
	int fd = connect_daemon(o->socket, o->timeout_ms);
	if (fd < 0) {
		int e = errno;
		say(LOG_WARNING, "%s: cannot reach nsidmapd at %s: %m", who, o->socket);
		return unreachable_errno(e) || e == ENAMETOOLONG ? UNREACHABLE : FAILED;
	}
	size_t n = build_request(request_buf, sizeof request_buf, o->proto, desc, len, q);
	if (!send_all(fd, request_buf, n)) {
		say(LOG_WARNING, "%s: nsidmapd at %s: send: %m", who, o->socket);
		close(fd);
		return UNREACHABLE;
	}
	size_t line_len = 0;
	int rl = read_line(fd, reply_buf, sizeof reply_buf, &line_len, deadline);
	int e = errno;
	close(fd);
	if (rl == -1) {
		errno = e;
		say(LOG_WARNING, "%s: no answer from nsidmapd at %s within %d ms: %m", who, o->socket, o->timeout_ms);
		return UNREACHABLE;
	}
	if (rl == -2 || !parse_reply(reply_buf, line_len, r)) {
		say(LOG_ERR, "%s: nsidmapd at %s sent a reply this helper does not understand (%zu bytes)", who, o->socket,
		    rl == -2 ? sizeof reply_buf - 1 : line_len);
		return FAILED;
	}
	return ANSWERED;
}

/* ---- answering the kernel --------------------------------------------------------------- */

static bool negate(unsigned int timeout)
{
	if (keyctl(KEYCTL_NEGATE, (unsigned long)serial, timeout, 0, 0) < 0) {
		say(LOG_ERR, "%s: negate: %m", who);
		return false;
	}
	return true;
}

/*
 * The host-wide cache keyring of the protocol, found by name in /proc/keys as nfsidmap does (the
 * kernel hangs it off a credential of its own: no special id names it). Only a root-owned keyring
 * counts: any user can name a session keyring of their own `.id_resolver` through
 * join_session_keyring, but not make it root's. Clearing it as root works through
 * KEY_FLAG_ROOT_CAN_CLEAR (fs/nfs/nfs4idmap.c, security/keys/keyctl.c keyctl_keyring_clear).
 */
/*
 * A /proc/keys line can be forged (a key description holding a newline and a whole fake line, in
 * a key whose owner let others view it): the kernel's own description of the key must agree —
 * a root-owned keyring of exactly that name.
 */
static bool is_cache_keyring(long ser, const char *name)
{
	char d[128];
	long n = keyctl(KEYCTL_DESCRIBE, (unsigned long)ser, (unsigned long)d, sizeof d, 0);
	if (n <= 0 || (size_t)n > sizeof d || d[n - 1] != '\0')
		return false;
	static const char HEAD[] = "keyring;0;0;";
	if (strncmp(d, HEAD, sizeof HEAD - 1) != 0)
		return false;
	const char *desc = strchr(d + sizeof HEAD - 1, ';'); /* past the permissions */
	return desc && strcmp(desc + 1, name) == 0;
}

static long find_cache_keyring(enum proto p)
{
	const char *name = cache_keyring(p);
	size_t nlen = strlen(name);
	FILE *f = fopen("/proc/keys", "re");
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	long found = 0;
	while (found == 0 && getline(&line, &cap, f) > 0) {
		/* %08x %7s %5d %4s %08x %5d %5d %-9.9s <description>[: <count>|: empty] (security/keys/proc.c) */
		unsigned int ser, perm;
		int uid, gid, usage, at = 0;
		char flags[8], expiry[8], type[10];
		if (sscanf(line, "%8x %7s %d %7s %8x %d %d %9s %n", &ser, flags, &usage, expiry, &perm, &uid, &gid, type, &at) < 8 || at == 0)
			continue;
		/* instantiated, and not revoked, dead or invalidated (flags I R D Q U N i) */
		if (strcmp(type, "keyring") != 0 || uid != 0 || flags[0] != 'I' || strpbrk(flags, "RDi"))
			continue;
		const char *d = line + at;
		if (strncmp(d, name, nlen) == 0 && (d[nlen] == ':' || d[nlen] == '\n' || d[nlen] == '\0') && is_cache_keyring((long)ser, name))
			found = (long)ser;
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * Instantiate with the daemon's exact bytes. The timeout first: keys that request_key makes give
 * SETATTR to possessors only and VIEW to their owner (security/keys/request_key.c,
 * construct_alloc_key), and this program possesses the key only through the authority, which the
 * instantiation revokes (request_key_auth.c): afterwards set_timeout fails with EACCES.
 * cifs.idmap does the same.
 */
static bool instantiate(const struct reply *r, enum proto p)
{
	if (keyctl(KEYCTL_SET_TIMEOUT, (unsigned long)serial, r->timeout, 0, 0) < 0) {
		say(LOG_ERR, "%s: set timeout %u: %m", who, r->timeout);
		return false;
	}
	for (int attempt = 0;; attempt++) {
		if (keyctl(KEYCTL_INSTANTIATE, (unsigned long)serial, (unsigned long)r->payload, r->payload_len, 0) == 0)
			return true;
		int e = errno;
		say(LOG_ERR, "%s: instantiate: %m", who);
		/* A full cache keyring or key quota: clear the protocol's keyring and try once more,
		 * as nfsidmap does (its keys are only a cache; the kernel asks again on a miss). */
		if (attempt > 0 || (e != EDQUOT && e != ENFILE && e != ENOMEM))
			return false;
		long ring = find_cache_keyring(p);
		if (ring <= 0) {
			say(LOG_ERR, "%s: no %s keyring to clear", who, cache_keyring(p));
			return false;
		}
		if (keyctl(KEYCTL_CLEAR, (unsigned long)ring, 0, 0, 0) < 0) {
			say(LOG_ERR, "%s: clear %s: %m", who, cache_keyring(p));
			return false;
		}
		say(LOG_NOTICE, "%s: cleared the %s keyring", who, cache_keyring(p));
	}
}

static bool has_prefix(const char *desc, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && memcmp(desc, prefix, n) == 0;
}

/*
 * Does the daemon's payload have the form the kernel expects for this description
 * (PROTOCOLS.md §2, §5)? The daemon encodes it so (src/responders/keyring/codec.ts); this is the
 * second look, because the kernel trusts the bytes: nfs_idmap_lookup_id copies up to 11 bytes and
 * parses them with kstrtol, so a decimal id without its NUL would be read on into the stack.
 *   uid: gid:    decimal id 0..4294967295, no leading zero, then one NUL
 *   user: group: a name of 1..128 bytes, no control byte
 *   os: gs:      a 4-byte id
 *   oi: gi:      a binary SID: revision, count <= 15, 6-byte authority, count 4-byte sub-authorities
 *                (the kernel takes the packed form or the 68-byte struct)
 */
static bool payload_fits(const char *desc, size_t len, const unsigned char *p, size_t n, enum proto proto)
{
	if (proto == NFS && (has_prefix(desc, len, "uid:") || has_prefix(desc, len, "gid:"))) {
		if (n < 2 || n > 11 || p[n - 1] != '\0' || (p[0] == '0' && n > 2))
			return false;
		unsigned long long v = 0;
		for (size_t i = 0; i + 1 < n; i++) {
			if (p[i] < '0' || p[i] > '9')
				return false;
			v = v * 10 + (unsigned)(p[i] - '0');
		}
		return v <= 4294967295ULL;
	}
	if (proto == NFS && (has_prefix(desc, len, "user:") || has_prefix(desc, len, "group:"))) {
		if (n < 1 || n > 128)
			return false;
		for (size_t i = 0; i < n; i++)
			if (p[i] < 0x20 || p[i] == 0x7f)
				return false;
		return true;
	}
	if (proto == CIFS && (has_prefix(desc, len, "os:") || has_prefix(desc, len, "gs:")))
		return n == 4;
	if (proto == CIFS && (has_prefix(desc, len, "oi:") || has_prefix(desc, len, "gi:")))
		return n >= 8 && n <= 68 && p[0] != 0 && p[1] <= 15 && n >= 8 + 4 * (size_t)p[1];
	return false; /* a description this helper does not know: the daemon should have rejected it */
}

static void apply(const struct reply *r, const struct options *o, const char *desc, size_t len)
{
	char shown[512];
	switch (r->action) {
	case INSTANTIATE:
		if (!payload_fits(desc, len, r->payload, r->payload_len, o->proto)) {
			say(LOG_ERR, "%s: nsidmapd answered %s description \"%s\" with %zu bytes that are not a payload of its kind: negated",
			    who, key_type(o->proto), printable(desc, len, shown, sizeof shown), r->payload_len);
			negate(ERROR_TIMEOUT);
			return;
		}
		if (!instantiate(r, o->proto))
			negate(ERROR_TIMEOUT);
		return;
	case NEGATE:
		negate(r->timeout);
		return;
	case REJECT:
		/* malformed: lookups fail with EKEYREJECTED until the timeout (man 2 keyctl_reject).
		 * Not logged here: any local user can ask for such keys at will, and the daemon's audit
		 * trail already has the refusal, once per description and interval (audit.refused). */
		if (keyctl(KEYCTL_REJECT, (unsigned long)serial, r->timeout, EKEYREJECTED, 0) < 0) {
			say(LOG_ERR, "%s: reject: %m", who);
			negate(ERROR_TIMEOUT);
		}
		return;
	}
}

/* The in-process fallback: `<node> <upcall.js> [--policy FILE] nfs|cifs <serial>`. execv keeps
 * the credentials and with them the assumed authority (include/linux/cred.h, request_key_auth). */
static void fall_back(const struct options *o)
{
	char *argv[8];
	int n = 0;
	argv[n++] = (char *)NSIDMAP_NODE;
	argv[n++] = (char *)NSIDMAP_FALLBACK;
	if (o->policy) {
		argv[n++] = (char *)"--policy";
		argv[n++] = (char *)o->policy;
	}
	argv[n++] = (char *)o->proto_text;
	argv[n++] = (char *)o->target;
	argv[n] = NULL;
	say(LOG_NOTICE, "%s: answering in-process (%s %s)", who, NSIDMAP_NODE, NSIDMAP_FALLBACK);
	closelog();
	execv(NSIDMAP_NODE, argv);
	say(LOG_ERR, "%s: exec %s: %m", who, NSIDMAP_NODE);
}

/* ---- command line ----------------------------------------------------------------------- */

static const char USAGE[] =
	"Usage: nsidmap-upcall [--socket PATH] [--policy FILE] [--timeout-ms N] nfs|cifs <key-serial>\n"
	"       nsidmap-upcall [--socket PATH] [--timeout-ms N] --dry-run nfs|cifs <description>\n"
	"\n"
	"Run by /sbin/request-key for id_resolver (nfs) and cifs.idmap (cifs) keys: asks nsidmapd\n"
	"(default socket " DEFAULT_SOCKET ") and instantiates, negates or rejects the key; when\n"
	"the daemon cannot be reached, answers in-process with\n"
	"  " NSIDMAP_NODE " " NSIDMAP_FALLBACK "\n"
	"--dry-run prints the daemon's decision (instantiate <hex> <timeout> | negate <timeout> |\n"
	"reject <timeout>) and touches no key; exit 69 when the daemon cannot be reached.\n"
	"\n"
	"Example rule (/etc/request-key.d/nsidmap.conf):\n"
	"  create id_resolver * * /usr/libexec/nsidmap/nsidmap-upcall nfs %k\n";

static bool parse_uint(const char *s, long max, long *v)
{
	char *end;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	long x = strtol(s, &end, 10);
	if (errno || *end || x > max)
		return false;
	*v = x;
	return true;
}

/* 0: parsed; 1: --help; 2: usage error */
static int parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .socket = DEFAULT_SOCKET, .timeout_ms = DEFAULT_TIMEOUT_MS };
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *a = argv[i];
		long v;
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--help") == 0) {
			return 1;
		} else if (strcmp(a, "--dry-run") == 0) {
			o->dry_run = true;
		} else if (i + 1 < argc && strcmp(a, "--socket") == 0) {
			o->socket = argv[++i];
		} else if (i + 1 < argc && strcmp(a, "--policy") == 0) {
			o->policy = argv[++i];
		} else if (i + 1 < argc && strcmp(a, "--timeout-ms") == 0 && parse_uint(argv[i + 1], 600000, &v) && v > 0) {
			o->timeout_ms = (int)v;
			i++;
		} else {
			return 2;
		}
	}
	if (argc - i != 2)
		return 2;
	o->proto_text = argv[i];
	o->target = argv[i + 1];
	if (strcmp(o->proto_text, "nfs") == 0)
		o->proto = NFS;
	else if (strcmp(o->proto_text, "cifs") == 0)
		o->proto = CIFS;
	else
		return 2;
	return 0;
}

/* --dry-run: the daemon's decision on stdout; no key, no fallback. */
static int dry_run(const struct options *o)
{
	size_t len = strlen(o->target);
	if (len == 0 || len > MAX_DESC) {
		fprintf(stderr, "nsidmap-upcall: a description is 1..%d bytes\n", MAX_DESC);
		return 2;
	}
	struct reply r;
	switch (ask_daemon(o, o->target, len, (struct requester){ 0, 0 }, &r)) {
	case UNREACHABLE:
		return 69; /* EX_UNAVAILABLE */
	case FAILED:
		return 70; /* EX_SOFTWARE */
	case ANSWERED:
		break;
	}
	if (!r.ok) {
		char c[128], m[512];
		fprintf(stderr, "nsidmap-upcall: %s: %s\n", printable(r.code ? r.code : "", r.code_len, c, sizeof c),
			printable(r.reason ? r.reason : "", r.reason_len, m, sizeof m));
		return 1;
	}
	if (r.action == INSTANTIATE) {
		printf("instantiate ");
		for (size_t i = 0; i < r.payload_len; i++)
			printf("%02x", r.payload[i]);
		printf(" %u\n", r.timeout);
	} else {
		printf("%s %u\n", r.action == NEGATE ? "negate" : "reject", r.timeout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	int pa = parse_args(argc, argv, &o);
	if (pa == 1) {
		fputs(USAGE, stdout);
		return 0;
	}
	openlog("nsidmap-upcall", LOG_PID, LOG_DAEMON);
	if (pa == 2) {
		fputs(USAGE, stderr);
		syslog(LOG_ERR, "bad command line (see nsidmap-upcall --help); check the request-key.d rule");
		/* the last argument of a rule is the serial: decide the key even so */
		long s;
		if (argc > 1 && parse_uint(argv[argc - 1], INT32_MAX, &s) && s > 0) {
			serial = (int32_t)s;
			snprintf(who, sizeof who, "key %d", serial);
			negate(ERROR_TIMEOUT);
		}
		return 2;
	}
	if (o.dry_run) {
		to_stderr = true;
		return dry_run(&o);
	}
	long s;
	if (!parse_uint(o.target, INT32_MAX, &s) || s <= 0) {
		syslog(LOG_ERR, "not a key serial: the rule must pass %%k");
		return 2;
	}
	serial = (int32_t)s;
	snprintf(who, sizeof who, "key %d", serial);

	const char *desc;
	size_t len;
	if (!describe_key(&desc, &len)) {
		negate(ERROR_TIMEOUT);
		return 1;
	}
	if (len == 0) {
		/* nothing to look up: refused as the daemon refuses a malformed description */
		if (keyctl(KEYCTL_REJECT, (unsigned long)serial, REJECT_TIMEOUT, EKEYREJECTED, 0) < 0)
			negate(ERROR_TIMEOUT);
		return 1;
	}
	struct reply r;
	struct requester q = requester();
	enum asked asked = ask_daemon(&o, desc, len, q, &r);
	if (asked == ANSWERED && !r.ok && q.auth > 0 && r.code && key_is(r.code, r.code_len, "NSIDMAP_EREQUEST")) {
		/* a daemon older than this helper knows only "pid": ask again in the form it reads */
		q = (struct requester){ requester_pid(q.auth), 0 };
		asked = ask_daemon(&o, desc, len, q, &r);
	}
	switch (asked) {
	case UNREACHABLE:
		fall_back(&o);
		/* exec failed */
		negate(ERROR_TIMEOUT);
		return 1;
	case FAILED:
		negate(ERROR_TIMEOUT);
		return 1;
	case ANSWERED:
		break;
	}
	if (!r.ok) {
		char c[128], m[512];
		say(LOG_ERR, "%s: nsidmapd: %s: %s", who, printable(r.code ? r.code : "", r.code_len, c, sizeof c),
		    printable(r.reason ? r.reason : "", r.reason_len, m, sizeof m));
		negate(ERROR_TIMEOUT);
		return 1;
	}
	apply(&r, &o, desc, len);
	return 0;
}
