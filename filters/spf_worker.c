/*
 * spf_worker.c - the SPF worker process (why a process: spf_worker.h):
 * reads CONFIG and CHECK messages from its socket (spf_proto.h), runs
 * libspf2 over a DNS layer of its own, answers with RESULT messages.
 * One check at a time, synchronously; the main process runs several
 * workers and kills one that takes too long.
 *
 * libspf2 is driven through its public API, with these changes to its
 * defaults:
 *  - The DNS layer (spf_dns.h's pluggable layer, below) resolves through
 *    moat's resolver in the main process: each lookup is a DNS_QUERY on
 *    the socket, and the worker waits (poll) for the DNS_ANSWER with the
 *    same id, at most the resolver timeout and what is left of the
 *    check's time budget (the main process sends what is left of 20 s);
 *    when the budget is spent the check ends in temperror. An answer
 *    with another id is one to a query given up on: skipped. The answer
 *    carries the records as the resolver got them (RDATA), which the
 *    layer converts for libspf2 itself.
 *  - Type SPF (99) is never queried (RFC 7208 3.1 discontinued it):
 *    libspf2 asks for it first, the layer answers "no data" itself.
 *  - RFC 7208 4.6.4 limits that libspf2 1.2.10 does not enforce are
 *    enforced in the layer: at most 10 DNS-querying terms (include, a,
 *    mx, ptr, exists, redirect) over the whole evaluation (libspf2
 *    counts per record, restarts at each include, and checks only
 *    before the next mechanism); at most 2 void lookups (none); an MX
 *    answer of more than 10 records is a permerror (libspf2 looks at
 *    the first 10 and may pass). When a limit is exceeded, the layer
 *    stops answering (every further query fails at once, without being
 *    sent) and the result is replaced by permerror afterwards. That is
 *    the RFC's result: the limit is crossed inside the evaluation of
 *    one term, which per RFC ends the evaluation with permerror there;
 *    libspf2 can only go on to fail that term (temperror) or to other
 *    terms whose lookups fail the same way, so nothing it does after
 *    that point can change the outcome, and no DNS traffic leaves the
 *    worker after it. Explanation (exp=) lookups do not count (4.6.4)
 *    and go through the layer's get_exp hook, which keeps them apart.
 *  - The localhost "free ride" of SPF_request_query_mailfrom() (every
 *    127.0.0.0/8 client passes) is not taken: the record is fetched and
 *    interpreted as in that function, without it.
 *  - No local policy and no trusted-forwarder whitelist; the default
 *    explanation (pointing at a defunct web site) is replaced by a
 *    neutral text of moat's.
 *  - libspf2's fatal error handler (it would abort()) reports the check
 *    as temperror to the main process and exits.
 *
 * Which mechanism matched: libspf2 does not say. With its debug output
 * on, the worker follows the evaluation (records fetched, address
 * comparisons, include/redirect results) and names the term whose
 * evaluation ended it: "ip4:192.0.2.0/24", "a:mail.example.org",
 * "include:_spf.example.net", "-all", or "default". Best effort: it only
 * ever feeds the Received-SPF header and the CLI, never the result.
 *
 * Owns (process globals, single-threaded): the receive buffer (a DNS
 * answer's records point into it until the next frame is read), the
 * libspf2 server and DNS layer, the state of the check being evaluated.
 */
#include "spf_worker.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "resolver.h"
#include "spf_proto.h"
#include "spf_syntax.h"

#define MAX_TERMS 10		/* RFC 7208 4.6.4 */
#define MAX_VOIDS 2
#define MAX_MX 10
#define MAX_PTR 10
#define MAX_PTR_NAMES 10	/* PTR names a ptr mechanism looks at */
#define MAX_QUERIES 250		/* any lookups in one evaluation, a backstop */
#define MAX_DEPTH 24		/* include/redirect frames followed */
#define TXT_MAX 4096		/* one TXT record, strings joined */
#define NAMES_MAX 16		/* MX/PTR targets remembered */

/* moat's explanation, instead of libspf2's link to a defunct site.
 * Spaces are written %_ (see macro_text()). %{c}: the client address in
 * its usual text form, IPv6 too (RFC 7208 7.3); %{i} would be 32 nibbles. */
#define MOAT_SPF_EXPLANATION "%{o}%_does%_not%_designate%_%{c}%_as%_a%_permitted%_sender"

enum limit {
	LIMIT_NONE = 0, LIMIT_TERMS, LIMIT_VOIDS, LIMIT_MX, LIMIT_QUERIES, LIMIT_BUDGET,
	LIMIT_SYNTAX
};

/* One SPF record being evaluated (the top one, an include, a redirect). */
struct frame {
	int kind;		/* 0 top, 1 include, 2 redirect */
	char name[SPF_DOMAIN_MAX + 1];
	int includes, includes_seen, has_redirect;
	char match[SPF_MECH_MAX + 1];	/* the term that matched, "" none yet */
	char owner[SPF_MECH_MAX + 1];	/* the term whose addresses are compared */
	int pending;		/* address comparisons owner still has */
};

static struct {
	int fd;
	uint32_t qid;		/* the last DNS_QUERY's id */
	struct spf_proto_config conf;
	SPF_server_t *spf;
	SPF_dns_server_t *layer;
	/* the check in progress */
	int busy;
	struct spf_proto_check check;
	SPF_request_t *req;
	struct timespec deadline;
	int terms, voids, queries;
	enum limit limit;
	/* MX or PTR target names whose address lookups follow */
	char names[NAMES_MAX][SPF_DOMAIN_MAX + 1];
	int nnames, next_name, names_owner_mx;
	char names_owner[SPF_MECH_MAX + 1];
	struct frame frames[MAX_DEPTH];
	int depth;		/* frames in use; 0 before the top record */
	int overflow;		/* frames past MAX_DEPTH */
	int nul_spf;		/* ask() dropped a "v=spf1" TXT record holding a NUL */
	char syntax[SPF_PROBLEM_MAX + 1];	/* LIMIT_SYNTAX: what was wrong */
} W;

/* Frames from the main process are read into rx; a DNS answer's records
 * (rr, rrlen) point into it. */
static unsigned char rx[SPF_PROTO_MAX];
static const unsigned char *rx_rr[SPF_DNS_MAX_RR];
static size_t rx_rrlen[SPF_DNS_MAX_RR];

/* ---- I/O with the main process ---- */

static int write_all(const unsigned char *p, size_t n)
{
	while (n) {
		ssize_t k = send(W.fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(unsigned char *p, size_t n)
{
	while (n) {
		ssize_t k = read(W.fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Reads one frame's payload into buf; its length, 0 at EOF, -1 bad. */
static long read_frame(unsigned char *buf, size_t len)
{
	unsigned char hdr[SPF_PROTO_HDR + 1];
	ssize_t k;
	do
		k = read(W.fd, hdr, 1);
	while (k < 0 && errno == EINTR);
	if (k == 0)
		return 0;
	if (k < 0 || read_all(hdr + 1, SPF_PROTO_HDR - 1) < 0)
		return -1;
	uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n == 0 || n > SPF_PROTO_MAX || n > len)
		return -1;
	return read_all(buf, n) < 0 ? -1 : (long)n;
}

static void send_result(const struct spf_proto_result *r)
{
	unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_WORKER_MAX];
	int n = spf_proto_encode_result(r, buf, sizeof(buf));
	if (n < 0 || write_all(buf, (size_t)n) < 0)
		_exit(3);
}

/* ---- time ---- */

static long ms_left(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(W.deadline.tv_sec - now.tv_sec) * 1000 +
	       (W.deadline.tv_nsec - now.tv_nsec) / 1000000;
}

/* ---- DNS through the main process ---- */

/* A malformed message from the main process: a bug or a compromise;
 * the worker goes (the main process sees it and starts another). */
__attribute__((noreturn)) static void bad_message(const char *what, const char *err)
{
	fprintf(stderr, "moat spf worker: %s%s%s\n", what, err ? ": " : "", err ? err : "");
	_exit(2);
}

/* Reads the next frame, which must be a DNS_ANSWER, into rx and ans. */
static void read_answer(struct spf_proto_dns_answer *ans)
{
	char err[128];
	long n = read_frame(rx, sizeof(rx));
	if (n == 0)	/* moat closed the socket: it is stopping */
		_exit(0);
	if (n < 0)
		bad_message("bad frame from moat", NULL);
	if (spf_proto_type(rx, (size_t)n) != SPF_MSG_DNS_ANSWER)
		bad_message("unexpected message during a check", NULL);
	if (spf_proto_decode_dns_answer(rx, (size_t)n, ans, rx_rr, rx_rrlen, SPF_DNS_MAX_RR, err,
					sizeof(err)) < 0)
		bad_message("bad DNS_ANSWER", err);
}

/* One lookup through moat's resolver, bounded by the resolver timeout
 * and the budget: 0 with *ans (records in rx, valid until the next
 * frame is read), or -1: no answer in time (*budget_out set if the
 * check's budget ran out), or a name the protocol does not carry. */
static int resolve(const char *name, int type, int *budget_out, struct spf_proto_dns_answer *ans)
{
	struct spf_proto_dns_query q;
	unsigned char buf[SPF_PROTO_HDR + SPF_PROTO_WORKER_MAX];
	struct timespec start, now;
	long left = ms_left();

	*budget_out = 0;
	if (left <= 0) {
		*budget_out = 1;
		return -1;
	}
	memset(&q, 0, sizeof(q));
	q.id = ++W.qid;
	q.type = (uint16_t)type;
	if (strlen(name) > SPF_QNAME_MAX)
		return -1;
	memcpy(q.name, name, strlen(name) + 1);
	int n = spf_proto_encode_dns_query(&q, buf, sizeof(buf));
	if (n < 0)	/* not a name a query can be made of (bad_name() let it by) */
		return -1;
	if (write_all(buf, (size_t)n) < 0)
		_exit(3);
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (long)(now.tv_sec - start.tv_sec) * 1000 +
			     (now.tv_nsec - start.tv_nsec) / 1000000;
		long wait = (long)W.conf.timeout_ms + 1000 - spent;	/* the main process answers by its own deadline, which starts a little later */
		left = ms_left();
		if (left < wait)
			wait = left;
		if (wait <= 0) {	/* given up: its answer, if any, is skipped later */
			*budget_out = left <= 0;
			return -1;
		}
		struct pollfd pfd = {W.fd, POLLIN, 0};
		int k = poll(&pfd, 1, (int)wait);
		if (k < 0 && errno != EINTR)
			_exit(3);
		if (k <= 0)
			continue;
		read_answer(ans);
		if (ans->id == q.id)
			return 0;
	}
}

/* A wire-format name (uncompressed) into dotted text; -1 if it holds
 * anything but LDH, '_' and a few harmless octets, or is too long. */
static int wire_name(const unsigned char *d, size_t n, char *out, size_t outlen)
{
	size_t i = 0, o = 0;
	while (i < n && d[i]) {
		size_t l = d[i++];
		if (l > 63 || i + l > n)
			return -1;
		if (o && o + 1 < outlen)
			out[o++] = '.';
		for (size_t j = 0; j < l; j++) {
			unsigned char c = d[i + j];
			if (c <= 0x20 || c >= 0x7f || c == '.' || c == '%' || c == '\\')
				return -1;
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)c;
		}
		i += l;
	}
	if (i >= n || o == 0 || o > SPF_DOMAIN_MAX)
		return -1;
	out[o] = '\0';
	return 0;
}

/* ---- following the evaluation (which term matched) ---- */

/* strlcpy: the frames and their strings all live in W */
static void scopy(char *dst, size_t len, const char *src)
{
	size_t n = strnlen(src, len - 1);
	memmove(dst, src, n);
	dst[n] = '\0';
}

static struct frame *cur_frame(void)
{
	return W.depth > 0 && !W.overflow ? &W.frames[W.depth - 1] : NULL;
}

static void frame_push(int kind, const char *name)
{
	if (W.depth == MAX_DEPTH || W.overflow) {
		W.overflow++;
		return;
	}
	struct frame *f = &W.frames[W.depth++];
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	scopy(f->name, sizeof(f->name), name);
}

/* A sub-record's evaluation ended with result (libspf2's word). */
static void frame_pop(const char *result)
{
	if (W.overflow) {
		W.overflow--;
		return;
	}
	if (W.depth <= 1)
		return;
	struct frame *child = &W.frames[--W.depth], *parent = &W.frames[W.depth - 1];
	if (!result)
		return;
	if (child->kind == 2)
		scopy(parent->match, sizeof(parent->match), child->match);
	else if (strcmp(result, "pass") == 0) {
		char name[SPF_DOMAIN_MAX + 1];
		scopy(name, sizeof(name), child->name);
		snprintf(parent->match, sizeof(parent->match), "include:%.246s", name);
	}
}

/* Counts the includes and the redirect of the SPF record among txt. */
static void frame_record(struct frame *f, const char *txt)
{
	const char *p = txt + 6;	/* after "v=spf1" */
	while (*p) {
		while (*p == ' ')
			p++;
		const char *t = p;
		while (*p && *p != ' ')
			p++;
		if (t < p && strchr("+-~?", *t))
			t++;
		if ((size_t)(p - t) > 8 && strncasecmp(t, "include:", 8) == 0)
			f->includes++;
		else if ((size_t)(p - t) > 9 && strncasecmp(t, "redirect=", 9) == 0)
			f->has_redirect = 1;
	}
}

static void on_debug(const char *file, int line, const char *msg)
{
	struct frame *f = cur_frame();
	(void)file;
	(void)line;
	if (!W.busy || !msg)
		return;
	if (strncmp(msg, "ip_match:", 9) == 0 && f) {
		const char *eq = strstr(msg, " == "), *cidr = strstr(msg, "(/"),
			   *last = strrchr(msg, ':');
		if (!eq || !cidr || !last)
			return;
		int matched = atoi(last + 1) == 1;
		if (f->pending > 0) {
			f->pending--;
			if (matched)
				scopy(f->match, sizeof(f->match), f->owner);
			return;
		}
		if (!matched)
			return;
		char dst[SPF_IP_MAX + 1];
		const char *d = eq + 4;
		size_t n = strcspn(d, " ");
		if (n > SPF_IP_MAX)
			return;
		memcpy(dst, d, n);
		dst[n] = '\0';
		int bits = atoi(cidr + 2), v6 = strchr(dst, ':') != NULL;
		if (bits == (v6 ? 128 : 32))
			snprintf(f->match, sizeof(f->match), "%s:%s", v6 ? "ip6" : "ip4", dst);
		else
			snprintf(f->match, sizeof(f->match), "%s:%s/%d", v6 ? "ip6" : "ip4", dst,
				 bits);
		return;
	}
	if (strncmp(msg, "include/redirect:", 17) == 0) {
		const char *r = strstr(msg, "result: ");
		if (strstr(msg, "executed SPF record") && r) {
			char res[16];
			size_t n = strcspn(r + 8, " ");
			snprintf(res, sizeof(res), "%.*s", (int)(n < 15 ? n : 15), r + 8);
			frame_pop(res);
		} else if (strstr(msg, "got SPF record") &&
			   !strstr(msg, SPF_strerror(SPF_E_SUCCESS))) {
			frame_pop(NULL);
		}
	}
}

static void on_quiet(const char *file, int line, const char *msg)
{
	(void)file;
	(void)line;
	(void)msg;
}

/* libspf2 found an internal error: the check is a temperror, the
 * worker starts afresh. */
__attribute__((noreturn)) static void on_fatal(const char *file, int line, const char *msg)
{
	if (W.busy) {
		struct spf_proto_result r;
		memset(&r, 0, sizeof(r));
		r.id = W.check.id;
		struct spf_proto_identity *id = (W.check.flags & SPF_CHECK_MAILFROM) ? &r.mailfrom
										    : &r.helo;
		id->done = 1;
		id->result = SPF_RES_TEMPERROR;
		char text[SPF_PROBLEM_MAX + 1];
		snprintf(text, sizeof(text), "libspf2 internal error at %s:%d: %s", file ? file : "?",
			 line, msg ? msg : "?");
		spf_text_sanitize(text, id->problem, sizeof(id->problem));
		send_result(&r);
	}
	_exit(70);
}

/* ---- the DNS layer ---- */

static int is_void(const SPF_dns_rr_t *rr)
{
	return rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA ||
	       (rr->herrno == NETDB_SUCCESS && rr->num_rr == 0);
}

static SPF_dns_rr_t *fail_rr(SPF_dns_server_t *s, const char *domain, ns_type type)
{
	return SPF_dns_rr_new_init(s, domain, type, 0, TRY_AGAIN);
}

static void hit(enum limit l)
{
	if (W.limit == LIMIT_NONE)
		W.limit = l;
}

/* A name no DNS query can be composed from (RFC 1035: an empty label
 * but the root, a label longer than 63 octets, more than 253 octets)?
 * libspf2 may expand macros into such names (RFC 7208 4.3, 5/10: such a
 * target does not exist); the protocol and libunbound would refuse them,
 * which libspf2 would take for a DNS failure (temperror). */
static int bad_name(const char *domain)
{
	size_t n = strlen(domain), label = 0;
	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || n > SPF_DOMAIN_MAX)
		return 1;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || domain[i] == '.') {
			if (label == 0 || label > 63)
				return 1;
			label = 0;
		} else {
			label++;
		}
	}
	return 0;
}

/* A TXT record's text that begins with the SPF version (RFC 7208 4.5,
 * case-insensitive as libspf2 selects them). */
static int is_spf(const char *t, size_t n)
{
	return n >= 6 && strncasecmp(t, "v=spf1", 6) == 0 && (n == 6 || t[6] == ' ');
}

/* Asks moat's resolver and converts the answer for libspf2. A failure
 * (SERVFAIL, timeout, any error) is TRY_AGAIN, as is an answer that was
 * truncated on the way (spf_proto.h) unless what is left decides it: an
 * MX answer of more than MAX_MX records, PTR names of which only the
 * first MAX_PTR_NAMES are used anyway. */
static SPF_dns_rr_t *ask(SPF_dns_server_t *s, const char *domain, ns_type type, int count)
{
	int budget = 0;
	SPF_dns_rr_t *rr;

	if (bad_name(domain))	/* not sent: no such name */
		return SPF_dns_rr_new_nxdomain(s, domain);
	if (++W.queries > MAX_QUERIES) {
		if (count)
			hit(LIMIT_QUERIES);
		return fail_rr(s, domain, type);
	}
	struct spf_proto_dns_answer ans;
	if (resolve(domain, type, &budget, &ans) < 0) {
		if (budget && count)
			hit(LIMIT_BUDGET);
		return fail_rr(s, domain, type);
	}
	if (moat_dns_temporary((enum moat_dns_status)ans.status) ||
	    (ans.truncated && !(type == ns_t_mx && ans.nrr > MAX_MX) &&
	     !(type == ns_t_ptr && ans.nrr >= MAX_PTR_NAMES)))
		return fail_rr(s, domain, type);
	if (ans.status == MOAT_DNS_NXDOMAIN)
		return SPF_dns_rr_new_nxdomain(s, domain);
	rr = SPF_dns_rr_new_init(s, domain, type, (int)ans.ttl, NETDB_SUCCESS);
	if (!rr)
		return NULL;
	int n = 0;
	for (size_t i = 0; i < ans.nrr; i++) {
		const unsigned char *d = ans.rr[i];
		size_t len = ans.rrlen[i];
		char text[TXT_MAX + 1];
		size_t tl = 0;
		switch (type) {
		case ns_t_a:
			if (len != 4 || SPF_dns_rr_buf_realloc(rr, n, sizeof(struct in_addr)))
				continue;
			memcpy(&rr->rr[n]->a, d, 4);
			break;
		case ns_t_aaaa:
			if (len != 16 || SPF_dns_rr_buf_realloc(rr, n, sizeof(struct in6_addr)))
				continue;
			memcpy(&rr->rr[n]->aaaa, d, 16);
			break;
		case ns_t_mx:
			if (len < 3 || wire_name(d + 2, len - 2, text, sizeof(text)) < 0 ||
			    SPF_dns_rr_buf_realloc(rr, n, strlen(text) + 1))
				continue;
			memcpy(rr->rr[n]->mx, text, strlen(text) + 1);
			break;
		case ns_t_ptr:
			if (wire_name(d, len, text, sizeof(text)) < 0 ||
			    SPF_dns_rr_buf_realloc(rr, n, strlen(text) + 1))
				continue;
			memcpy(rr->rr[n]->ptr, text, strlen(text) + 1);
			break;
		case ns_t_txt: {
			/* character-strings joined (RFC 7208 3.3); NUL octets drop the record */
			size_t j = 0;
			int bad = 0;
			while (j < len) {
				size_t l = d[j++];
				if (j + l > len || tl + l > TXT_MAX) {
					bad = 1;
					break;
				}
				if (memchr(d + j, '\0', l))
					bad = 1;
				memcpy(text + tl, d + j, l);
				tl += l;
				j += l;
			}
			text[tl] = '\0';
			/* an SPF record with a NUL is a syntax error (control
			 * character), seen by layer_lookup() */
			if (bad && j >= len && memchr(text, '\0', tl) && is_spf(text, tl))
				W.nul_spf = 1;
			if (bad || SPF_dns_rr_buf_realloc(rr, n, tl + 1))
				continue;
			memcpy(rr->rr[n]->txt, text, tl + 1);
			break;
		}
		default:
			continue;
		}
		n++;
	}
	rr->num_rr = n;
	if (n == 0)
		rr->herrno = NO_DATA;
	return rr;
}

/* An address lookup of the next MX or PTR target name? */
static int is_target(const char *domain)
{
	if (W.next_name < W.nnames && strcasecmp(domain, W.names[W.next_name]) == 0) {
		W.next_name++;
		return 1;
	}
	W.nnames = W.next_name = 0;
	return 0;
}

static void remember_targets(const SPF_dns_rr_t *rr, int mx, const char *owner)
{
	W.nnames = W.next_name = 0;
	W.names_owner_mx = mx;
	snprintf(W.names_owner, sizeof(W.names_owner), "%s", owner);
	for (int i = 0; rr->herrno == NETDB_SUCCESS && i < rr->num_rr && i < NAMES_MAX; i++)
		snprintf(W.names[W.nnames++], sizeof(W.names[0]), "%s", mx ? rr->rr[i]->mx
									 : rr->rr[i]->ptr);
}

/* A DNS-querying term: counted, and refused past the limit. */
static int term(void)
{
	if (++W.terms > MAX_TERMS) {
		hit(LIMIT_TERMS);
		return -1;
	}
	return 0;
}

static void count_void(const SPF_dns_rr_t *rr)
{
	if (rr && is_void(rr) && ++W.voids > MAX_VOIDS)
		hit(LIMIT_VOIDS);
}

/* The SPF records of domain that libspf2 just fetched (the top record,
 * an include: or a redirect= target), against RFC 7208's grammar.
 * libspf2 compiles many records the RFC rejects (spf_syntax.h). A record
 * libspf2 fetches here is one it is about to evaluate (it fetches a
 * record only to evaluate it, at the top or when it reaches the
 * include: or redirect= that names it), and RFC 7208 4.6 says a record
 * that does not parse ends that evaluation with permerror right there,
 * whatever the rest of the record or the records around it say. So, as
 * for the lookup limits: the layer stops answering (no traffic after
 * that point) and evaluate() replaces libspf2's result by permerror.
 * A record that holds a NUL never reaches libspf2 (ask() drops it) and
 * is a syntax error too (a control character). */
static void check_records(const char *domain, const SPF_dns_rr_t *rr)
{
	char why[160];
	int bad = 0;

	if (W.nul_spf) {
		snprintf(why, sizeof(why), "NUL character in the record");
		bad = 1;
	}
	for (int i = 0; !bad && rr && rr->herrno == NETDB_SUCCESS && i < rr->num_rr; i++) {
		const char *t = rr->rr[i]->txt;
		size_t n = strlen(t);
		if (is_spf(t, n) && spf_syntax_check(t, n, why, sizeof(why)) < 0)
			bad = 1;
	}
	W.nul_spf = 0;
	if (bad && W.limit == LIMIT_NONE) {
		char d[SPF_DOMAIN_MAX + 1];
		scopy(d, sizeof(d), domain);
		snprintf(W.syntax, sizeof(W.syntax), "syntax error in the SPF record of %.100s: %.110s",
			 d, why);
		hit(LIMIT_SYNTAX);
	}
}

static SPF_dns_rr_t *layer_lookup(SPF_dns_server_t *s, const char *domain, ns_type type,
				  int should_cache)
{
	struct frame *f = cur_frame();
	SPF_dns_rr_t *rr;
	char owner[SPF_MECH_MAX + 1];

	if (!domain || !*domain)
		return SPF_dns_rr_new_init(s, domain ? domain : "", type, 0, HOST_NOT_FOUND);
	if (type == ns_t_spf)	/* never asked: discontinued (RFC 7208 3.1) */
		return SPF_dns_rr_new_init(s, domain, type, 0, NO_DATA);
	if (W.limit != LIMIT_NONE)	/* evaluation over: no more traffic */
		return fail_rr(s, domain, type);

	switch (type) {
	case ns_t_txt:
		W.nnames = W.next_name = 0;
		W.nul_spf = 0;
		if (W.depth == 0 && !W.overflow) {
			rr = ask(s, domain, type, 1);
			frame_push(0, domain);
		} else {
			/* include: or redirect= */
			int kind = 1;
			if (f && f->includes_seen >= f->includes && f->has_redirect)
				kind = 2;
			else if (f)
				f->includes_seen++;
			if (term() < 0)
				return fail_rr(s, domain, type);
			rr = ask(s, domain, type, 1);
			count_void(rr);
			frame_push(kind, domain);
		}
		f = cur_frame();
		for (int i = 0; f && rr && rr->herrno == NETDB_SUCCESS && i < rr->num_rr; i++) {
			const char *t = (const char *)rr->rr[i];	/* its txt member */
			if (strncasecmp(t, "v=spf1", 6) == 0 && (t[6] == ' ' || t[6] == '\0'))
				frame_record(f, t);
		}
		check_records(domain, rr);
		return rr;
	case ns_t_mx:
		if (term() < 0)
			return fail_rr(s, domain, type);
		rr = ask(s, domain, type, 1);
		count_void(rr);
		if (rr && rr->herrno == NETDB_SUCCESS && rr->num_rr > MAX_MX) {
			hit(LIMIT_MX);
			SPF_dns_rr_free(rr);
			return fail_rr(s, domain, type);
		}
		snprintf(owner, sizeof(owner), "mx:%s", domain);
		if (rr)
			remember_targets(rr, 1, owner);
		return rr;
	case ns_t_ptr:
		if (should_cache) {	/* the ptr mechanism; FALSE: a %{p} macro */
			if (term() < 0)
				return fail_rr(s, domain, type);
		}
		rr = ask(s, domain, type, should_cache);
		if (should_cache)
			count_void(rr);
		if (rr && rr->herrno == TRY_AGAIN && W.limit == LIMIT_NONE) {
			/* RFC 7208 5.5: a DNS error in the PTR lookup: no match
			 * (7.3: %{p} "unknown"), not a temperror; not void */
			SPF_dns_rr_free(rr);
			rr = SPF_dns_rr_new_init(s, domain, type, 0, HOST_NOT_FOUND);
		}
		/* RFC 7208 4.6.4: of more than 10 PTR names only the first 10
		 * are used, never a permerror; libspf2 1.2.10 checks the first
		 * 10 and then answers permerror (SPF_E_BIG_DNS), so it gets no
		 * more than 10. (With the answer's order rotated by the
		 * resolver, which names those are varies, as the RFC allows.) */
		if (rr && rr->herrno == NETDB_SUCCESS && rr->num_rr > MAX_PTR_NAMES)
			rr->num_rr = MAX_PTR_NAMES;	/* the rest stays allocated, freed with rr */
		if (rr)
			remember_targets(rr, 0, "ptr");
		return rr;
	case ns_t_a:
	case ns_t_aaaa:
		if (is_target(domain)) {
			rr = ask(s, domain, type, 1);
			if (rr && rr->herrno == TRY_AGAIN && W.limit == LIMIT_NONE &&
			    !W.names_owner_mx) {
				/* RFC 7208 5.5: a DNS error on a PTR target's
				 * addresses skips that name */
				SPF_dns_rr_free(rr);
				rr = SPF_dns_rr_new_init(s, domain, type, 0, HOST_NOT_FOUND);
			}
			if (f && rr && W.names_owner_mx) {
				scopy(f->owner, sizeof(f->owner), W.names_owner);
				f->pending = rr->herrno == NETDB_SUCCESS ? rr->num_rr : 0;
			}
			return rr;
		}
		if (term() < 0)
			return fail_rr(s, domain, type);
		rr = ask(s, domain, type, 1);
		count_void(rr);
		if (!should_cache) {	/* exists: */
			if (f && rr && rr->herrno == NETDB_SUCCESS && rr->num_rr > 0)
				snprintf(f->match, sizeof(f->match), "exists:%s", domain);
		} else if (f && rr) {	/* a: */
			snprintf(f->owner, sizeof(f->owner), "a:%s", domain);
			f->pending = rr->herrno == NETDB_SUCCESS ? rr->num_rr : 0;
		}
		return rr;
	default:
		return SPF_dns_rr_new_init(s, domain, type, 0, NO_DATA);
	}
}

/* libspf2's macro compiler ends a literal at a space and then takes the
 * character after it for a %-escape, so an explanation with spaces
 * comes out as "a%b%c". RFC 7208 7.1 lets a space be written "%_", which
 * it compiles right: out = in with every space as "%_". */
static int macro_text(const char *in, char *out, size_t len)
{
	size_t o = 0;
	for (; *in; in++) {
		if (o + 3 > len)
			return -1;
		if (*in == ' ') {
			out[o++] = '%';
			out[o++] = '_';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
	return 0;
}

/* The first SPF_EXP_MAX octets of an explanation text, cut before a
 * macro-expand the cut would split. libspf2's macro compiler refuses a
 * long text (its literals are at most 255 octets), and moat keeps no
 * more than SPF_EXP_MAX octets of the expansion anyway: a long
 * explanation is cut, like any other, instead of being dropped. */
static void exp_cut(const char *in, char *out, size_t len)
{
	size_t n = strnlen(in, SPF_EXP_MAX), keep = 0, i = 0;
	while (i < n) {
		if (in[i] != '%') {
			keep = ++i;
			continue;
		}
		size_t e = i + 1;
		if (e < n && in[e] == '{') {
			while (e < n && in[e] != '}')
				e++;
		}
		if (e >= n)	/* cut inside this macro-expand */
			break;
		i = e + 1;
		keep = i;
	}
	if (n < strlen(in))	/* cut: not inside a macro-expand */
		n = keep;
	if (n >= len)
		n = len - 1;
	memcpy(out, in, n);
	out[n] = '\0';
}

/* The exp= text (RFC 7208 6.2): one TXT record, macro-expanded; on any
 * problem the server's (moat's) explanation. Not a counted lookup. */
static SPF_errcode_t layer_get_exp(SPF_server_t *srv, const char *domain, char **bufp,
				   size_t *buflenp)
{
	SPF_dns_rr_t *rr = NULL;
	SPF_macro_t *macro = NULL;
	SPF_response_t *scratch = NULL;
	SPF_errcode_t err = SPF_E_DNS_ERROR;
	char name[SPF_DOMAIN_MAX + 1];

	snprintf(name, sizeof(name), "%s", domain ? domain : "");
	if (W.req && W.limit == LIMIT_NONE && name[0] && strlen(domain) <= SPF_DOMAIN_MAX)
		rr = ask(W.layer, name, ns_t_txt, 0);
	scratch = W.req ? SPF_response_new(W.req) : NULL;
	char text[2 * SPF_EXP_MAX + 1], cut[SPF_EXP_MAX + 1];
	if (rr && rr->herrno == NETDB_SUCCESS && rr->num_rr == 1)
		exp_cut(rr->rr[0]->txt, cut, sizeof(cut));
	if (scratch && rr && rr->herrno == NETDB_SUCCESS && rr->num_rr == 1 &&
	    macro_text(cut, text, sizeof(text)) == 0 &&
	    SPF_record_compile_macro(srv, scratch, &macro, text) == SPF_E_SUCCESS && macro)
		err = SPF_record_expand_data(srv, W.req, scratch,
					     (SPF_data_t *)((char *)macro + sizeof(SPF_macro_t)),
					     macro->macro_len, bufp, buflenp);
	if (err != SPF_E_SUCCESS && scratch && srv->explanation)
		err = SPF_record_expand_data(srv, W.req, scratch,
					     (SPF_data_t *)((char *)srv->explanation +
							    sizeof(SPF_macro_t)),
					     srv->explanation->macro_len, bufp, buflenp);
	if (macro)
		SPF_macro_free(macro);
	if (rr)
		SPF_dns_rr_free(rr);
	if (scratch)
		SPF_response_free(scratch);
	return err;
}

static void spf_setup(void)
{
	SPF_response_t *resp = NULL;

	if (W.spf)
		SPF_server_free(W.spf);
	W.spf = NULL;
	if (!W.layer) {
		W.layer = calloc(1, sizeof(*W.layer));
		if (!W.layer)
			_exit(4);
		W.layer->destroy = NULL;	/* ours: the server must not free it */
		W.layer->lookup = layer_lookup;
		W.layer->get_exp = layer_get_exp;
		W.layer->name = "moat";
	}
	W.spf = SPF_server_new_dns(W.layer, 1);	/* debug on: on_debug follows it */
	if (!W.spf)
		_exit(4);
	SPF_server_set_sanitize(W.spf, 1);
	SPF_server_set_max_dns_mech(W.spf, MAX_TERMS);
	SPF_server_set_max_dns_mx(W.spf, MAX_MX);
	SPF_server_set_max_dns_ptr(W.spf, MAX_PTR);
	if (W.conf.receiver[0])
		SPF_server_set_rec_dom(W.spf, W.conf.receiver);
	if (SPF_server_set_explanation(W.spf, MOAT_SPF_EXPLANATION, &resp) != SPF_E_SUCCESS)
		_exit(4);
	if (resp)
		SPF_response_free(resp);
	/* no SPF_server_set_localpolicy(): the empty policy SPF_server_new_dns()
	 * installs has no trusted-forwarder whitelist, and requests do not use it */
}

/* ---- one check ---- */

static const char *limit_text(enum limit l)
{
	switch (l) {
	case LIMIT_TERMS: return "more than 10 DNS-querying terms (RFC 7208 4.6.4)";
	case LIMIT_VOIDS: return "more than 2 void lookups (RFC 7208 4.6.4)";
	case LIMIT_MX: return "more than 10 MX records (RFC 7208 4.6.4)";
	case LIMIT_QUERIES: return "too many DNS lookups";
	case LIMIT_BUDGET: return "time budget exhausted";
	case LIMIT_SYNTAX: return W.syntax;
	default: return "";
	}
}

static void evaluate(int helo_identity, struct spf_proto_identity *out)
{
	SPF_request_t *req = SPF_request_new(W.spf);
	SPF_response_t *resp = NULL;
	SPF_record_t *rec = NULL;
	SPF_errcode_t err;
	const struct spf_proto_check *c = &W.check;

	out->done = 1;
	out->result = SPF_RES_TEMPERROR;
	W.terms = W.voids = W.queries = 0;
	W.limit = LIMIT_NONE;
	W.depth = W.overflow = 0;
	W.nnames = W.next_name = 0;
	if (!req) {
		snprintf(out->problem, sizeof(out->problem), "out of memory");
		return;
	}
	if ((strchr(c->ip, ':') ? SPF_request_set_ipv6_str(req, c->ip)
				: SPF_request_set_ipv4_str(req, c->ip)) != SPF_E_SUCCESS ||
	    (c->helo[0] && SPF_request_set_helo_dom(req, c->helo) != SPF_E_SUCCESS) ||
	    SPF_request_set_env_from(req, helo_identity ? "" : c->sender) != 0) {
		snprintf(out->problem, sizeof(out->problem), "libspf2 refused the request");
		SPF_request_free(req);
		return;
	}
	req->use_helo = (char)helo_identity;
	req->cur_dom = helo_identity ? req->helo_dom : req->env_from_dp;
	W.req = req;
	resp = SPF_response_new(req);
	if (!resp || !req->cur_dom) {
		snprintf(out->problem, sizeof(out->problem), "libspf2 refused the request");
		goto done;
	}
	/* SPF_request_query_mailfrom() without its free pass for loopback */
	err = SPF_server_get_record(W.spf, req, resp, &rec);
	if (err != SPF_E_SUCCESS) {
		if (rec)
			SPF_record_free(rec);
		rec = NULL;
		if (resp->result == SPF_RESULT_INVALID)
			resp->result = err == SPF_E_DNS_ERROR ? SPF_RESULT_TEMPERROR
							      : SPF_RESULT_PERMERROR;
		SPF_i_done(resp, resp->result, resp->reason, err);
	} else {
		resp->spf_record_exp = rec;
		SPF_record_interpret(rec, req, resp, 0);
		SPF_record_free(rec);
		resp->spf_record_exp = NULL;
	}

	switch (SPF_response_result(resp)) {
	case SPF_RESULT_PASS: out->result = SPF_RES_PASS; break;
	case SPF_RESULT_FAIL: out->result = SPF_RES_FAIL; break;
	case SPF_RESULT_SOFTFAIL: out->result = SPF_RES_SOFTFAIL; break;
	case SPF_RESULT_NEUTRAL: out->result = SPF_RES_NEUTRAL; break;
	case SPF_RESULT_NONE: out->result = SPF_RES_NONE; break;
	case SPF_RESULT_PERMERROR: out->result = SPF_RES_PERMERROR; break;
	default: out->result = SPF_RES_TEMPERROR; break;
	}
	if (W.limit == LIMIT_BUDGET) {
		out->result = SPF_RES_TEMPERROR;
	} else if (W.limit != LIMIT_NONE) {
		out->result = SPF_RES_PERMERROR;
	}
	if (W.limit != LIMIT_NONE) {
		snprintf(out->problem, sizeof(out->problem), "%s", limit_text(W.limit));
	} else if (out->result == SPF_RES_PERMERROR || out->result == SPF_RES_TEMPERROR) {
		const char *e = SPF_strerror(SPF_response_errcode(resp));
		for (int i = 0; i < SPF_response_messages(resp); i++) {
			SPF_error_t *m = SPF_response_message(resp, i);
			if (m && SPF_error_errorp(m) && SPF_error_message(m)) {
				e = SPF_error_message(m);
				break;
			}
		}
		spf_text_sanitize(e, out->problem, sizeof(out->problem));
	}
	if (out->result <= SPF_RES_NEUTRAL && W.limit == LIMIT_NONE) {
		static const char qual[] = {'+', '-', '~', '?'};
		const struct frame *top = W.depth > 0 ? &W.frames[0] : NULL;
		char mech[SPF_MECH_MAX + 1];
		if (SPF_response_reason(resp) == SPF_REASON_DEFAULT) {
			snprintf(out->mechanism, sizeof(out->mechanism), "default");
		} else if (SPF_response_reason(resp) == SPF_REASON_MECH) {
			snprintf(mech, sizeof(mech), "%s", top && top->match[0] ? top->match : "all");
			if (out->result == SPF_RES_PASS)
				snprintf(out->mechanism, sizeof(out->mechanism), "%s", mech);
			else
				snprintf(out->mechanism, sizeof(out->mechanism), "%c%.*s",
					 qual[out->result], SPF_MECH_MAX - 1, mech);
			spf_text_sanitize(out->mechanism, mech, sizeof(mech));
			snprintf(out->mechanism, sizeof(out->mechanism), "%s", mech);
		}
	}
	if (out->result == SPF_RES_FAIL && SPF_response_get_explanation(resp))
		spf_text_sanitize(SPF_response_get_explanation(resp), out->explanation,
				  sizeof(out->explanation));
	out->terms = (uint16_t)(W.terms > 65535 ? 65535 : W.terms);
	out->voids = (uint16_t)(W.voids > 65535 ? 65535 : W.voids);
done:
	W.req = NULL;
	if (resp)
		SPF_response_free(resp);
	SPF_request_free(req);
}

static void run_check(void)
{
	struct spf_proto_result r;
	memset(&r, 0, sizeof(r));
	r.id = W.check.id;
	clock_gettime(CLOCK_MONOTONIC, &W.deadline);
	W.deadline.tv_sec += W.check.budget_ms / 1000;
	W.deadline.tv_nsec += (long)(W.check.budget_ms % 1000) * 1000000;
	if (W.deadline.tv_nsec >= 1000000000) {
		W.deadline.tv_sec++;
		W.deadline.tv_nsec -= 1000000000;
	}
	W.busy = 1;
	if (W.check.flags & SPF_CHECK_MAILFROM)
		evaluate(0, &r.mailfrom);
	if (W.check.flags & SPF_CHECK_HELO)
		evaluate(1, &r.helo);
	W.busy = 0;
	send_result(&r);
}

int spf_worker_main(void)
{
	struct spf_proto_dns_answer stale;
	char err[128];
	int configured = 0;

	W.fd = SPF_WORKER_FD;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	closefrom(SPF_WORKER_FD + 1);	/* listeners and such of the parent */
	SPF_error_handler = on_fatal;
	SPF_warning_handler = on_quiet;
	SPF_info_handler = on_quiet;
	SPF_debug_handler = on_debug;

	for (;;) {
		long n = read_frame(rx, sizeof(rx));
		if (n == 0)
			break;
		if (n < 0) {
			fprintf(stderr, "moat spf worker: bad frame from moat\n");
			return 2;
		}
		switch (spf_proto_type(rx, (size_t)n)) {
		case SPF_MSG_CONFIG:
			if (spf_proto_decode_config(rx, (size_t)n, &W.conf, err, sizeof(err)) < 0) {
				fprintf(stderr, "moat spf worker: bad CONFIG: %s\n", err);
				return 2;
			}
			spf_setup();
			configured = 1;
			break;
		case SPF_MSG_CHECK:
			if (!configured ||
			    spf_proto_decode_check(rx, (size_t)n, &W.check, err, sizeof(err)) < 0) {
				fprintf(stderr, "moat spf worker: bad CHECK: %s\n",
					configured ? err : "before CONFIG");
				return 2;
			}
			run_check();
			break;
		case SPF_MSG_DNS_ANSWER:
			/* the answer to a query the last check gave up on */
			if (spf_proto_decode_dns_answer(rx, (size_t)n, &stale, rx_rr, rx_rrlen,
							SPF_DNS_MAX_RR, err, sizeof(err)) < 0) {
				fprintf(stderr, "moat spf worker: bad DNS_ANSWER: %s\n", err);
				return 2;
			}
			break;
		default:
			fprintf(stderr, "moat spf worker: unexpected message type\n");
			return 2;
		}
	}
	if (W.spf)
		SPF_server_free(W.spf);
	free(W.layer);
	return 0;
}
