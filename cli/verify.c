/*
 * verify.c - `moat verify [FILE]`: checks the DKIM signatures of one
 * message (FILE, or standard input when absent or "-"), with the keys
 * looked up through moat's resolver as the daemon would.
 *
 * The file may have LF or CRLF line ends; a bare LF becomes CRLF, as an
 * MTA receiving it would make it. Output: one line per signature, top
 * to bottom, starting with its RFC 8601 result:
 *	dkim=pass header.d=D header.s=S header.b=B (ALG, N bits)
 *	dkim=fail header.d=D header.s=S header.b=B (REASON)
 * or "dkim=none (no signatures)". Exit status: 0 every signature passed
 * (at least one), 1 one failed or had a permanent error (or another
 * result), 2 a key lookup failed temporarily (and nothing failed), 3 no
 * signature, 64 usage, 66 the file could not be read, 78 configuration.
 * Owns the loop, the resolver and the verifier of the run.
 */
#include "verify.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim_verify.h"
#include "resolver.h"

#define EX_NOINPUT 66
#define MAX_MESSAGE (64L * 1024 * 1024)

struct run {
	struct event_base *base;
	struct dkim_verifier *v;
	size_t pending;		/* key lookups in flight */
};

struct lookup {
	struct run *run;
	size_t index;
};

/* The whole input with bare LF turned into CRLF (malloc'd); NULL on error. */
static char *read_message(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	int c, prev = 0;

	if (!buf)
		return NULL;
	while ((c = getc(f)) != EOF) {
		if (n + 2 > cap) {
			if (cap >= (size_t)MAX_MESSAGE) {
				errno = EFBIG;
				free(buf);
				return NULL;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		if (c == '\n' && prev != '\r')
			buf[n++] = '\r';
		buf[n++] = (char)c;
		prev = c;
	}
	if (ferror(f)) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

static void on_key(void *arg, const struct moat_dns_answer *a)
{
	struct lookup *l = arg;
	enum dkim_key_status st = DKIM_KEY_TEMP;

	if (a->status == MOAT_DNS_OK)
		st = DKIM_KEY_OK;
	else if (a->status == MOAT_DNS_NXDOMAIN || a->status == MOAT_DNS_NODATA)
		st = DKIM_KEY_NONE;
	dkim_verifier_key(l->run->v, l->index, st, a->txt, st == DKIM_KEY_OK ? a->n : 0);
	l->run->pending--;
	free(l);
}

static void print_result(const struct dkim_result *r)
{
	printf("dkim=%s", dkim_status_name(r->status));
	if (r->domain)
		printf(" header.d=%s", r->domain);
	if (r->selector)
		printf(" header.s=%s", r->selector);
	if (r->b_prefix)
		printf(" header.b=%s", r->b_prefix);
	if (r->status != DKIM_PASS) {
		printf(" (%s)\n", r->reason ? r->reason : "no reason");
		return;
	}
	printf(" (%s, %d bits", r->algorithm, r->key_bits);
	if (r->testing)
		printf(", testing");
	if (r->l >= 0)
		printf(", l=%lld%s", r->l, r->body_truncated ? ", body goes on past l=" : "");
	printf(")\n");
}

/* Where the body starts: after the first empty line (or at the end). */
static size_t body_start(const char *m, size_t len)
{
	if (len >= 2 && m[0] == '\r' && m[1] == '\n')
		return 2;
	for (size_t i = 0; i + 3 < len; i++)
		if (m[i] == '\r' && m[i + 1] == '\n' && m[i + 2] == '\r' && m[i + 3] == '\n')
			return i + 4;
	return len;
}

static int verify(struct run *run, struct moat_resolver *res, const char *m, size_t len)
{
	size_t b = body_start(m, len);
	if (dkim_verifier_headers(run->v, m, b) < 0) {
		fprintf(stderr, "moat verify: out of memory\n");
		return 2;
	}
	size_t n = dkim_verifier_count(run->v);
	if (n == 0) {
		printf("dkim=none (no signatures)\n");
		return 3;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = dkim_verifier_key_name(run->v, i);
		if (!name)
			continue;
		struct lookup *l = malloc(sizeof(*l));
		if (!l || !moat_resolver_query(res, name, MOAT_DNS_TXT, 0, on_key, l)) {
			free(l);
			dkim_verifier_key(run->v, i, DKIM_KEY_TEMP, NULL, 0);
			continue;
		}
		l->run = run;
		l->index = i;
		run->pending++;
	}
	dkim_verifier_body(run->v, m + b, len - b);
	dkim_verifier_finish(run->v);
	while (run->pending > 0)
		event_base_loop(run->base, EVLOOP_ONCE);

	int fail = 0, temp = 0;
	for (size_t i = 0; i < n; i++) {
		const struct dkim_result *r = dkim_verifier_result(run->v, i);
		print_result(r);
		if (r->status == DKIM_PASS)
			continue;
		if (r->status == DKIM_TEMPERROR)
			temp++;
		else
			fail++;
	}
	return fail ? 1 : temp ? 2 : 0;
}

int moat_cli_verify(const struct moat_config *c, int argc, char **argv)
{
	char err[512];
	FILE *f = stdin;
	const char *path = argc > 1 ? argv[1] : "-";

	if (argc > 2 || (argc == 2 && argv[1][0] == '-' && argv[1][1] != '\0')) {
		fprintf(stderr, "usage: moat verify [FILE]\n");
		return 64;
	}
	if (strcmp(path, "-") != 0 && !(f = fopen(path, "rb"))) {
		fprintf(stderr, "moat verify: %s: %s\n", path, strerror(errno));
		return EX_NOINPUT;
	}
	size_t len = 0;
	char *m = read_message(f, &len);
	int rerr = errno;
	if (f != stdin)
		fclose(f);
	if (!m) {
		fprintf(stderr, "moat verify: %s: %s\n", path, strerror(rerr));
		return EX_NOINPUT;
	}

	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	struct run run = {event_base_new(), NULL, 0};
	struct moat_resolver *res = run.base && rc ? moat_resolver_new(run.base, rc, err, sizeof(err)) : NULL;
	if (!res) {
		fprintf(stderr, "moat verify: %s\n", rc ? err : "no resolver configuration");
		if (run.base)
			event_base_free(run.base);
		free(m);
		return 78;
	}
	int status = 2;
	if (!(run.v = dkim_verifier_new(NULL)))
		fprintf(stderr, "moat verify: out of memory\n");
	else
		status = verify(&run, res, m, len);
	moat_resolver_free(res);
	event_base_free(run.base);
	dkim_verifier_free(run.v);
	free(m);
	return status;
}
