/*
 * dkim_speed.c - DKIM signatures and verifications per second through
 * moat's own code path (filters/dkim_sign.c, dkim_verify.c, dkim_canon.c),
 * one thread, for comparison with `openssl speed rsa2048 ed25519`;
 * rates are per CPU second (user + system) of this process.
 *
 *	dkim_speed [-t SECONDS] [-s BODY_OCTETS] KEYFILE...
 *
 * Each key file (RSA or Ed25519 PEM, as `moat keygen` writes) is loaded
 * once. For each key the program then, for SECONDS each:
 *   sign    hashes the body (relaxed) and makes the DKIM-Signature, as
 *           the daemon does per message (dkim_body_hash_* + dkim_sign);
 *   verify  runs a whole verifier over the signed message: parse the
 *           signature, parse the key record (as a DNS answer gives it),
 *           hash the body, check the header signature.
 * and prints one line per operation:
 *	RESULT op=sign alg=rsa-sha256 bytes=10240 n=1234 seconds=1.00 per_s=1234.0
 * (seconds: CPU seconds)
 * Built by tests/bench/run.py against build/libmoat.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dkim_canon.h"
#include "dkim_keyfile.h"
#include "dkim_sign.h"
#include "dkim_verify.h"

/* CPU seconds of this process: like `openssl speed` (which divides by
 * user CPU time unless -elapsed), so that other load on the machine does
 * not count against either side. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A message with typical header fields and a body of about bodylen
 * octets of 72-character lines; CRLF. *hlen: octets of the header block
 * with its final CRLF (not the empty line). */
static char *make_message(size_t bodylen, size_t *len, size_t *hlen)
{
	static const char head[] =
		"From: Alice Example <alice@example.net>\r\n"
		"To: Bob Example <bob@example.org>\r\n"
		"Subject: benchmark message\r\n"
		"Date: Fri, 27 Nov 2026 12:00:00 +0000\r\n"
		"Message-ID: <bench.1@example.net>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n";
	size_t cap = sizeof(head) + bodylen + 128;
	char *m = malloc(cap);
	if (!m)
		return NULL;
	size_t n = sizeof(head) - 1;
	memcpy(m, head, n);
	*hlen = n;
	memcpy(m + n, "\r\n", 2);
	n += 2;
	size_t body0 = n;
	unsigned line = 0;
	while (n - body0 < bodylen) {
		int w = snprintf(m + n, cap - n, "%05u The quick brown fox jumps over the lazy dog, "
				 "again and again  and again.\r\n", line++);
		n += (size_t)w;
	}
	*len = n;
	return m;
}

struct signed_msg {
	char *text;		/* "DKIM-Signature:" value CRLF, then the message */
	size_t len;
};

static int sign_once(const struct dkim_sign_key *key, const char *msg, size_t len, size_t hlen,
		     struct signed_msg *out)
{
	static const struct dkim_sign_params base = {
		.hcanon = DKIM_CANON_RELAXED,
		.bcanon = DKIM_CANON_RELAXED,
		.now = 1795000000,	/* fixed: the verifier uses the same clock */
	};
	struct dkim_sign_params p = base;
	p.headers = dkim_sign_default_headers;
	p.nheaders = dkim_sign_default_nheaders;
	p.oversign = dkim_sign_default_oversign;
	p.noversign = dkim_sign_default_noversign;
	unsigned char bh[DKIM_MAX_DIGEST];
	unsigned long long clen;
	char err[256], *value = NULL;
	struct dkim_body_hash *h = dkim_body_hash_new(DKIM_CANON_RELAXED, DKIM_HASH_SHA256, -1);
	if (!h)
		return -1;
	dkim_body_hash_update(h, msg + hlen + 2, len - hlen - 2);
	int n = dkim_body_hash_final(h, bh, &clen);
	dkim_body_hash_free(h);
	if (n < 0 || dkim_sign(key, &p, msg, hlen, bh, (size_t)n, &value, err, sizeof(err)) < 0) {
		fprintf(stderr, "dkim_speed: sign: %s\n", n < 0 ? "body hash" : err);
		return -1;
	}
	if (out) {
		size_t vl = strlen(value);
		out->len = 15 + vl + 2 + len;
		out->text = malloc(out->len);
		if (!out->text) {
			free(value);
			return -1;
		}
		memcpy(out->text, "DKIM-Signature:", 15);
		memcpy(out->text + 15, value, vl);
		memcpy(out->text + 15 + vl, "\r\n", 2);
		memcpy(out->text + 17 + vl, msg, len);
	}
	free(value);
	return 0;
}

static int verify_once(const struct signed_msg *s, const char *record)
{
	struct dkim_verify_opts o;
	dkim_verify_opts_default(&o);
	o.now = 1795000000;
	struct dkim_verifier *v = dkim_verifier_new(&o);
	if (!v)
		return -1;
	const char *sep = memmem(s->text, s->len, "\r\n\r\n", 4);
	size_t hlen = (size_t)(sep - s->text) + 2;
	int ok = -1;
	if (dkim_verifier_headers(v, s->text, hlen) == 0 && dkim_verifier_count(v) == 1) {
		const char *txt[1] = { record };
		dkim_verifier_key(v, 0, DKIM_KEY_OK, txt, 1);
		dkim_verifier_body(v, s->text + hlen + 2, s->len - hlen - 2);
		dkim_verifier_finish(v);
		const struct dkim_result *r = dkim_verifier_result(v, 0);
		if (r && r->status == DKIM_PASS)
			ok = 0;
		else
			fprintf(stderr, "dkim_speed: verify: %s (%s)\n",
				r ? dkim_status_name(r->status) : "no result",
				r && r->reason ? r->reason : "");
	}
	dkim_verifier_free(v);
	return ok;
}

int main(int argc, char **argv)
{
	double seconds = 1.0;
	size_t bodylen = 10240;
	int opt;

	while ((opt = getopt(argc, argv, "t:s:")) != -1) {
		switch (opt) {
		case 't': seconds = atof(optarg); break;
		case 's': bodylen = (size_t)atol(optarg); break;
		default:
			fprintf(stderr, "usage: dkim_speed [-t SECONDS] [-s BODY_OCTETS] KEYFILE...\n");
			return 2;
		}
	}
	if (optind >= argc || seconds <= 0) {
		fprintf(stderr, "usage: dkim_speed [-t SECONDS] [-s BODY_OCTETS] KEYFILE...\n");
		return 2;
	}
	size_t len, hlen;
	char *msg = make_message(bodylen, &len, &hlen);
	if (!msg)
		return 1;
	for (int i = optind; i < argc; i++) {
		char err[256];
		enum dkim_key_type type;
		int bits;
		EVP_PKEY *pkey = dkim_keyfile_load(argv[i], &type, &bits, err, sizeof(err));
		char *pub = pkey ? dkim_key_public_b64_new(pkey, err, sizeof(err)) : NULL;
		struct dkim_sign_key *key = pub ? dkim_sign_key_new("example.net", "bench", pkey,
								    err, sizeof(err)) : NULL;
		if (!key) {
			fprintf(stderr, "dkim_speed: %s: %s\n", argv[i], err);
			return 1;
		}
		char record[2048];
		snprintf(record, sizeof(record), "v=DKIM1; k=%s; p=%s", dkim_key_type_name(type), pub);
		free(pub);
		const char *alg = dkim_sign_alg_name(key->alg);
		struct signed_msg sm;
		if (sign_once(key, msg, len, hlen, &sm) < 0 || verify_once(&sm, record) < 0)
			return 1;

		long n = 0;
		double t0 = now(), t;
		do {
			if (sign_once(key, msg, len, hlen, NULL) < 0)
				return 1;
			n++;
		} while ((t = now() - t0) < seconds);
		printf("RESULT op=sign alg=%s bytes=%zu n=%ld seconds=%.3f per_s=%.1f\n",
		       alg, len, n, t, (double)n / t);
		n = 0;
		t0 = now();
		do {
			if (verify_once(&sm, record) < 0)
				return 1;
			n++;
		} while ((t = now() - t0) < seconds);
		printf("RESULT op=verify alg=%s bytes=%zu n=%ld seconds=%.3f per_s=%.1f\n",
		       alg, len, n, t, (double)n / t);
		fflush(stdout);
		free(sm.text);
		dkim_sign_key_free(key);
	}
	free(msg);
	return 0;
}
