/*
 * bench/upcall --floor: a stand-in for nsidmapd that answers the helper's upcall op at once, in C,
 * one connection at a time — the fastest any daemon behind a socket could be. It knows one rule:
 * `uid:<prefix><N>@…` maps to uid <base> + N (the bench's users), anything else is negated.
 *
 *   instant-server SOCKET PREFIX BASE
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int unhex(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	const char *prefix = argv[2];
	long base = atol(argv[3]);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(argv[1]) >= sizeof a.sun_path)
		return 2;
	strcpy(a.sun_path, argv[1]);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(argv[1]);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0)
		return 1;
	static char req[20000], desc[5000], out[512];
	for (;;) {
		int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		size_t n = 0;
		while (n < sizeof req - 1 && !memchr(req, '\n', n)) {
			ssize_t r = read(c, req + n, sizeof req - 1 - n);
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		req[n] = 0;
		const char *h = strstr(req, "\"descriptionHex\":\"");
		size_t d = 0;
		for (h = h ? h + 18 : req + n; h[0] && h[1] && h[0] != '"' && d < sizeof desc - 1; h += 2)
			desc[d++] = (char)(unhex(h[0]) << 4 | unhex(h[1]));
		desc[d] = 0;
		size_t pl = strlen(prefix);
		int len;
		if (strncmp(desc, "uid:", 4) == 0 && strncmp(desc + 4, prefix, pl) == 0) {
			char id[32], hex[80];
			int k = snprintf(id, sizeof id, "%ld", base + atol(desc + 4 + pl));
			for (int i = 0; i < k; i++)
				sprintf(hex + 2 * i, "%02x", (unsigned char)id[i]);
			len = snprintf(out, sizeof out, "{\"id\":1,\"ok\":true,\"result\":{\"action\":\"instantiate\",\"payload\":\"%s00\",\"timeout\":600}}\n", hex);
		} else {
			len = snprintf(out, sizeof out, "{\"id\":1,\"ok\":true,\"result\":{\"action\":\"negate\",\"timeout\":60,\"reason\":\"unknown\"}}\n");
		}
		if (write(c, out, (size_t)len) < 0) { /* the helper gave up: nothing to do */ }
		close(c);
	}
}
