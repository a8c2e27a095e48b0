/*
 * access.c - the access filter: allow and deny lists by client address
 * or network, HELO name, sender and recipient (entry syntax: access.h).
 *
 * Lists are read once per configuration load (inline entries from the
 * `access` section, then each list file), checked entry by entry so that
 * every bad one is reported, and indexed into sorted arrays: client
 * networks grouped by family and prefix length (longest first, looked up
 * by masking the client's address and a binary search), names and
 * addresses by lower-cased key, one array per pattern type, tried from
 * the most specific type down. A stage looks up one list and turns the
 * entry into a symbol and, unless it only scores, a decision.
 *
 * Owns: each access_list's entries, strings and lookup arrays, kept in
 * the access_conf of the configuration that read them and freed by its
 * release(). No global mutable state.
 */
#include "access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nelem.h"

#define MAX_TEXT 250		/* reply text, fits a moat_decision */
#define MAX_FILE_ERRORS 100	/* bad lines reported one by one per file */

static const char *const list_names[ACCESS_LIST__COUNT] = {
	"client", "helo", "sender", "recipient",
};

const char *access_list_name(enum access_list_kind kind)
{
	return (unsigned)kind < ACCESS_LIST__COUNT ? list_names[kind] : "?";
}

static const struct action_def {
	const char *name;
	enum access_action action;
	char code_class;	/* '5', '4': takes optional quoted reply text */
} actions[] = {
	{"allow", ACCESS_ALLOW, 0},
	{"reject", ACCESS_REJECT, '5'},
	{"tempfail", ACCESS_TEMPFAIL, '4'},
	{"discard", ACCESS_DISCARD, 0},
	{"score", ACCESS_SCORE, 0},
};

const char *access_action_name(enum access_action a)
{
	for (size_t i = 0; i < NELEM(actions); i++)
		if (actions[i].action == a)
			return actions[i].name;
	return "?";
}

/* ---- small string helpers ---- */

static int is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static const char *skip_space(const char *p)
{
	while (is_space((unsigned char)*p))
		p++;
	return p;
}

static size_t token_len(const char *p)
{
	size_t n = 0;
	while (p[n] && !is_space((unsigned char)p[n]))
		n++;
	return n;
}

/* End of the entry: end of text, or a # comment. */
static int at_end(const char *p)
{
	return *p == '\0' || *p == '#';
}

static char *lower_dup(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (!d)
		return NULL;
	for (size_t i = 0; i < n; i++)
		d[i] = (char)lower((unsigned char)s[i]);
	d[n] = '\0';
	return d;
}

/* Compares key (lower case) with the first len octets of s, case-folded,
 * like strcmp. */
static int key_cmp(const char *key, const char *s, size_t len)
{
	size_t i;
	for (i = 0; i < len; i++) {
		int a = (unsigned char)key[i], b = lower((unsigned char)s[i]);
		if (a != b)
			return a - b;
	}
	return key[i] ? 1 : 0;
}

/* ---- patterns ---- */

/* Checks a domain name of n octets (no trailing dot): LDH labels (and
 * '_'), each 1 to 63 octets, 253 in all. */
static int domain_check(const char *d, size_t n, char *err, size_t errlen)
{
	size_t label = 0;
	if (n == 0 || n > 253) {
		snprintf(err, errlen, "expected a domain name of 1 to 253 characters");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				break;
			label = 0;
			continue;
		}
		if (c >= 0x80) {
			snprintf(err, errlen, "\"%.*s\": non-ASCII name; write an internationalized "
				 "domain in its xn-- form", (int)n, d);
			return -1;
		}
		if (!is_alnum(c) && c != '-' && c != '_') {
			snprintf(err, errlen, "\"%.*s\": unexpected '%c' in a domain name "
				 "(letters, digits, '-' and '.')", (int)n, d, c);
			return -1;
		}
		if (++label > 63) {
			snprintf(err, errlen, "\"%.*s\": a label is longer than 63 characters", (int)n, d);
			return -1;
		}
	}
	if (label == 0) {
		snprintf(err, errlen, "\"%.*s\": empty label in a domain name", (int)n, d);
		return -1;
	}
	return 0;
}

/* An address literal "[192.0.2.1]", "[IPv6:2001:db8::1]". */
static int literal_check(const char *s, size_t n, char *err, size_t errlen)
{
	char buf[64];
	unsigned char a[16];
	if (n < 3 || s[0] != '[' || s[n - 1] != ']' || n - 2 >= sizeof(buf))
		goto bad;
	memcpy(buf, s + 1, n - 2);
	buf[n - 2] = '\0';
	if (inet_pton(AF_INET, buf, a) == 1)
		return 0;
	if (strncasecmp(buf, "IPv6:", 5) == 0 && inet_pton(AF_INET6, buf + 5, a) == 1)
		return 0;
bad:
	snprintf(err, errlen, "\"%.*s\": expected an address literal like [192.0.2.1] or "
		 "[IPv6:2001:db8::1]", (int)n, s);
	return -1;
}

/* A domain, trailing dot allowed, or (allow_literal) an address literal.
 * Sets *keylen to the length without the trailing dot. */
static int name_check(const char *s, size_t n, int allow_literal, size_t *keylen, char *err,
		      size_t errlen)
{
	if (n && s[0] == '[') {
		*keylen = n;
		return allow_literal ? literal_check(s, n, err, errlen) : -1;
	}
	if (n > 1 && s[n - 1] == '.')
		n--;
	*keylen = n;
	return domain_check(s, n, err, errlen);
}

static void mask(unsigned char *a, unsigned prefix, size_t bytes)
{
	for (size_t i = 0; i < bytes; i++) {
		unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;
		if (bits < 8)
			a[i] &= (unsigned char)(0xff00u >> bits);
	}
}

/* "192.0.2.1" or "2001:db8::1" (v4-mapped IPv6 becomes IPv4) into a[16]
 * (IPv4 in the first 4 octets). Returns 4, 6 or 0. */
static int addr_parse(const char *s, size_t n, unsigned char a[16])
{
	char buf[64];
	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(a, 0, 16);
	if (inet_pton(AF_INET, buf, a) == 1)
		return 4;
	if (inet_pton(AF_INET6, buf, a) != 1)
		return 0;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		memset(a + 4, 0, 12);
		return 4;
	}
	return 6;
}

static int cidr_parse(struct access_entry *e, const char *s, size_t n, char *err, size_t errlen)
{
	const char *slash = memchr(s, '/', n);
	size_t alen = slash ? (size_t)(slash - s) : n;
	unsigned char a[16];
	char buf[64];

	int fam = addr_parse(s, alen, a);
	if (!fam) {
		snprintf(err, errlen, "\"%.*s\": expected an IPv4 or IPv6 address or network "
			 "(192.0.2.1, 192.0.2.0/24, 2001:db8::/32)", (int)n, s);
		return -1;
	}
	/* a v4-mapped entry is IPv4: its prefix counts from bit 96 */
	int mapped = fam == 4 && memchr(s, ':', alen) != NULL;
	unsigned max = fam == 4 ? 32 : 128, prefix = max;
	if (slash) {
		const char *p = slash + 1;
		size_t plen = n - alen - 1;
		unsigned v = 0;
		if (plen == 0 || plen > 3)
			goto bad_prefix;
		for (size_t i = 0; i < plen; i++) {
			if (p[i] < '0' || p[i] > '9')
				goto bad_prefix;
			v = v * 10 + (unsigned)(p[i] - '0');
		}
		if (mapped) {
			if (v < 96 || v > 128) {
				snprintf(err, errlen, "\"%.*s\": an IPv4-mapped network needs a prefix "
					 "from /96 to /128; write it as IPv4", (int)n, s);
				return -1;
			}
			v -= 96;
		}
		if (v > max) {
			snprintf(err, errlen, "\"%.*s\": prefix length /%u is out of range for %s "
				 "(0 to %u)", (int)n, s, v, fam == 4 ? "IPv4" : "IPv6", max);
			return -1;
		}
		prefix = v;
	}
	unsigned char net[16];
	memcpy(net, a, 16);
	mask(net, prefix, fam == 4 ? 4 : 16);
	if (memcmp(net, a, 16) != 0) {
		inet_ntop(fam == 4 ? AF_INET : AF_INET6, net, buf, sizeof(buf));
		snprintf(err, errlen, "\"%.*s\": address bits set after the /%u prefix; "
			 "expected %s/%u", (int)n, s, prefix, buf, prefix);
		return -1;
	}
	e->type = ACCESS_PAT_CIDR;
	e->family = fam;
	e->prefix = prefix;
	memcpy(e->addr, net, 16);
	return 0;
bad_prefix:
	snprintf(err, errlen, "\"%.*s\": expected a prefix length after '/' "
		 "(0 to %u)", (int)n, s, max);
	return -1;
}

/* Sets e->type and e->key for a helo, sender or recipient pattern. */
static int name_pattern_parse(struct access_entry *e, enum access_list_kind kind, const char *s,
			      size_t n, char *err, size_t errlen)
{
	size_t klen;
	const char *at = NULL;

	for (size_t i = n; i-- > 0;)
		if (s[i] == '@') {
			at = s + i;
			break;
		}
	if (n == 2 && memcmp(s, "<>", 2) == 0) {
		if (kind != ACCESS_LIST_SENDER) {
			snprintf(err, errlen, "<> (the null sender) belongs in the sender list");
			return -1;
		}
		e->type = ACCESS_PAT_NULL;
		return 0;
	}
	if (s[0] == '<' || s[n - 1] == '>') {
		snprintf(err, errlen, "\"%.*s\": write addresses without <>", (int)n, s);
		return -1;
	}
	if (at && kind == ACCESS_LIST_HELO) {
		snprintf(err, errlen, "\"%.*s\": expected a host name (mx.example.org), "
			 ".example.org for its subdomains, or an address literal", (int)n, s);
		return -1;
	}
	if (at) {
		size_t llen = (size_t)(at - s);
		if (llen == 0) {
			snprintf(err, errlen, "\"%.*s\": expected user@domain, user@, a domain or "
				 ".domain (write %.*s for the whole domain)", (int)n, s,
				 (int)(n - 1), s + 1);
			return -1;
		}
		for (size_t i = 0; i < llen; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c <= 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '@') {
				snprintf(err, errlen, "\"%.*s\": unexpected character in the local part",
					 (int)n, s);
				return -1;
			}
		}
		if (at + 1 == s + n) {
			e->type = ACCESS_PAT_LOCAL;
			return (e->key = lower_dup(s, llen)) ? 0 : -2;
		}
		if (name_check(at + 1, n - llen - 1, 1, &klen, err, errlen) < 0) {
			if (!*err)
				snprintf(err, errlen, "\"%.*s\": bad domain", (int)n, s);
			return -1;
		}
		e->type = ACCESS_PAT_ADDRESS;
		return (e->key = lower_dup(s, llen + 1 + klen)) ? 0 : -2;
	}
	if (s[0] == '.') {
		if (name_check(s + 1, n - 1, 0, &klen, err, errlen) < 0) {
			if (!*err)
				snprintf(err, errlen, "\"%.*s\": expected .domain", (int)n, s);
			return -1;
		}
		e->type = ACCESS_PAT_SUBDOMAIN;
		return (e->key = lower_dup(s + 1, klen)) ? 0 : -2;
	}
	if (name_check(s, n, kind == ACCESS_LIST_HELO, &klen, err, errlen) < 0) {
		if (!*err)
			snprintf(err, errlen, "\"%.*s\": an address literal only fits the helo list "
				 "or user@[literal]", (int)n, s);
		return -1;
	}
	e->type = ACCESS_PAT_DOMAIN;
	return (e->key = lower_dup(s, klen)) ? 0 : -2;
}

/* ---- actions ---- */

/* "5.7.1 text" with the given class digit. */
static int status_check(const char *t, char cls, char *err, size_t errlen)
{
	const char *p = t;
	int ok = *p == '2' || *p == '4' || *p == '5';
	if (ok && *++p != '.')
		ok = 0;
	for (int part = 0; ok && part < 2; part++) {
		int digits = 0;
		while (p[1] >= '0' && p[1] <= '9' && digits < 4) {
			p++;
			digits++;
		}
		if (digits < 1 || digits > 3 || *++p != (part == 0 ? '.' : ' '))
			ok = 0;
	}
	if (ok && !p[1])
		ok = 0;
	if (!ok) {
		snprintf(err, errlen, "reply text \"%s\": expected an enhanced status code and "
			 "text, e.g. \"%s\"", t, cls == '5' ? "5.7.1 Access denied" :
			 "4.7.1 Try again later");
		return -1;
	}
	if (t[0] != cls) {
		snprintf(err, errlen, "reply text \"%s\": %s needs a %c.x.x status code%s", t,
			 cls == '5' ? "reject" : "tempfail", cls,
			 t[0] == '4' ? " (use tempfail for 4.x.x)" :
			 t[0] == '5' ? " (use reject for 5.x.x)" : "");
		return -1;
	}
	return 0;
}

/* A double-quoted text at *pp (\" and \\ escapes) into out. */
static int quoted_parse(const char **pp, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *p = *pp + 1;
	size_t n = 0;
	for (;; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\0') {
			snprintf(err, errlen, "unterminated quoted reply text");
			return -1;
		}
		if (c == '"')
			break;
		if (c == '\\' && (p[1] == '"' || p[1] == '\\'))
			c = (unsigned char)*++p;
		if (c < 0x20 || c >= 0x7f) {
			snprintf(err, errlen, "reply text: only printable ASCII characters allowed");
			return -1;
		}
		if (n + 1 >= outlen) {
			snprintf(err, errlen, "reply text longer than %zu characters", outlen - 1);
			return -1;
		}
		out[n++] = (char)c;
	}
	out[n] = '\0';
	*pp = p + 1;
	return 0;
}

static int score_parse(const char *s, size_t n, double *out, char *err, size_t errlen)
{
	char buf[32];
	size_t i = 0, digits = 0, dots = 0;
	if (n < sizeof(buf)) {
		if (s[0] == '-' || s[0] == '+')
			i++;
		for (; i < n; i++) {
			if (s[i] >= '0' && s[i] <= '9')
				digits++;
			else if (s[i] == '.' && dots++ == 0)
				continue;
			else
				break;
		}
	}
	if (n >= sizeof(buf) || i < n || digits == 0) {
		snprintf(err, errlen, "score \"%.*s\": expected a number, e.g. score 2.5 or "
			 "score -1", (int)n, s);
		return -1;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	*out = strtod(buf, NULL);
	if (!isfinite(*out)) {
		snprintf(err, errlen, "score \"%s\": out of range", buf);
		return -1;
	}
	return 0;
}

/* ---- lists ---- */

void access_list_init(struct access_list *l, enum access_list_kind kind)
{
	memset(l, 0, sizeof(*l));
	l->kind = kind;
}

static void index_free(struct access_list *l)
{
	free(l->cidr);
	free(l->groups);
	l->cidr = NULL;
	l->groups = NULL;
	l->ncidr = l->ngroups = 0;
	for (size_t t = 0; t < NELEM(l->names); t++) {
		free(l->names[t]);
		l->names[t] = NULL;
		l->nnames[t] = 0;
	}
	l->null_sender = NULL;
	l->indexed = 0;
}

void access_list_free(struct access_list *l)
{
	index_free(l);
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].pattern);
		free(l->v[i].text);
		free(l->v[i].key);
	}
	free(l->v);
	for (size_t i = 0; i < l->nsources; i++)
		free(l->sources[i]);
	free(l->sources);
	enum access_list_kind kind = l->kind;
	access_list_init(l, kind);
}

/* The list's copy of source (shared by its entries). */
static const char *source_intern(struct access_list *l, const char *source)
{
	for (size_t i = l->nsources; i-- > 0;)
		if (strcmp(l->sources[i], source) == 0)
			return l->sources[i];
	char **v = realloc(l->sources, (l->nsources + 1) * sizeof(*v));
	if (!v)
		return NULL;
	l->sources = v;
	if (!(v[l->nsources] = strdup(source)))
		return NULL;
	return v[l->nsources++];
}

int access_list_parse(struct access_list *l, const char *text, const char *source, int line,
		      char *err, size_t errlen)
{
	struct access_entry e;
	char reply[MAX_TEXT + 1] = "";
	const struct action_def *act = NULL;

	memset(&e, 0, sizeof(e));
	err[0] = '\0';
	const char *p = skip_space(text);
	if (at_end(p))
		return 0;
	const char *pat = p;
	size_t patlen = token_len(p);
	p = skip_space(p + patlen);
	if (at_end(p)) {
		snprintf(err, errlen, "\"%.*s\": expected PATTERN ACTION, where ACTION is allow, "
			 "reject, tempfail, discard or score N", (int)patlen, pat);
		return -1;
	}
	size_t alen = token_len(p);
	for (size_t i = 0; i < NELEM(actions); i++)
		if (strlen(actions[i].name) == alen && memcmp(actions[i].name, p, alen) == 0)
			act = &actions[i];
	if (!act) {
		snprintf(err, errlen, "unknown action \"%.*s\": expected allow, reject, tempfail, "
			 "discard or score N", (int)alen, p);
		return -1;
	}
	e.action = act->action;
	p = skip_space(p + alen);
	if (act->action == ACCESS_SCORE) {
		if (at_end(p)) {
			snprintf(err, errlen, "score needs a number: score N, e.g. score 2.5 or "
				 "score -1");
			return -1;
		}
		size_t n = token_len(p);
		if (score_parse(p, n, &e.score, err, errlen) < 0)
			return -1;
		p = skip_space(p + n);
	} else if (act->code_class && *p == '"') {
		if (quoted_parse(&p, reply, sizeof(reply), err, errlen) < 0 ||
		    status_check(reply, act->code_class, err, errlen) < 0)
			return -1;
		p = skip_space(p);
	} else if (act->code_class && !at_end(p)) {
		snprintf(err, errlen, "%s: reply text goes in double quotes, e.g. %s \"%s\"",
			 act->name, act->name, act->code_class == '5' ? "5.7.1 Access denied" :
			 "4.7.1 Try again later");
		return -1;
	}
	if (!at_end(p)) {
		snprintf(err, errlen, "unexpected \"%.*s\" after the %s action", (int)token_len(p),
			 p, act->name);
		return -1;
	}

	int r = l->kind == ACCESS_LIST_CLIENT
		? cidr_parse(&e, pat, patlen, err, errlen)
		: name_pattern_parse(&e, l->kind, pat, patlen, err, errlen);
	if (r == -1)
		return -1;
	if (r < 0)
		goto oom;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct access_entry *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			goto oom;
		l->v = v;
		l->cap = cap;
	}
	e.line = line;
	e.order = l->n;
	if (!(e.source = source_intern(l, source)) || !(e.pattern = strndup(pat, patlen)) ||
	    (reply[0] && !(e.text = strdup(reply))))
		goto oom;
	l->v[l->n++] = e;
	l->indexed = 0;
	return 1;
oom:
	free(e.key);
	free(e.pattern);
	free(e.text);
	snprintf(err, errlen, "out of memory");
	return -1;
}

int access_list_read_file(struct access_list *l, const char *path,
			  void (*report)(void *arg, int line, const char *what), void *arg,
			  char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL, why[512];
	size_t cap = 0;
	ssize_t n;
	int line = 0, bad = 0;

	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&buf, &cap, f)) >= 0) {
		line++;
		if (memchr(buf, '\0', (size_t)n)) {
			report(arg, line, "NUL character in the line");
			bad++;
		} else if (access_list_parse(l, buf, path, line, why, sizeof(why)) < 0) {
			report(arg, line, why);
			bad++;
		}
	}
	int rerr = ferror(f) ? errno : 0;
	free(buf);
	fclose(f);
	if (rerr) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(rerr));
		return -1;
	}
	return bad;
}

static int cidr_order(const void *a, const void *b)
{
	const struct access_entry *x = *(const struct access_entry *const *)a;
	const struct access_entry *y = *(const struct access_entry *const *)b;
	if (x->family != y->family)
		return x->family - y->family;
	if (x->prefix != y->prefix)
		return x->prefix > y->prefix ? -1 : 1;	/* longest first */
	int c = memcmp(x->addr, y->addr, 16);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int key_order(const void *a, const void *b)
{
	const struct access_entry *x = *(const struct access_entry *const *)a;
	const struct access_entry *y = *(const struct access_entry *const *)b;
	int c = strcmp(x->key, y->key);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

int access_list_index(struct access_list *l)
{
	size_t count[ACCESS_PAT_NULL] = {0};

	index_free(l);
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].type == ACCESS_PAT_NULL) {
			if (!l->null_sender)
				l->null_sender = &l->v[i];
		} else {
			count[l->v[i].type]++;
		}
	for (size_t t = 0; t < ACCESS_PAT_NULL; t++)
		if (count[t] && !(l->names[t] = malloc(count[t] * sizeof(*l->names[t]))))
			goto oom;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].type != ACCESS_PAT_NULL)
			l->names[l->v[i].type][l->nnames[l->v[i].type]++] = &l->v[i];

	/* equal patterns: the first listed is kept */
	for (size_t t = 0; t < ACCESS_PAT_NULL; t++) {
		const struct access_entry **v = l->names[t];
		size_t n = l->nnames[t], k = 0;
		if (!n)
			continue;
		qsort(v, n, sizeof(*v), t == ACCESS_PAT_CIDR ? cidr_order : key_order);
		for (size_t i = 0; i < n; i++) {
			if (k && (t == ACCESS_PAT_CIDR ? v[k - 1]->family == v[i]->family &&
				  v[k - 1]->prefix == v[i]->prefix &&
				  memcmp(v[k - 1]->addr, v[i]->addr, 16) == 0
				  : strcmp(v[k - 1]->key, v[i]->key) == 0))
				continue;
			v[k++] = v[i];
		}
		l->nnames[t] = k;
	}

	/* client networks: one group per family and prefix length */
	l->cidr = l->names[ACCESS_PAT_CIDR];
	l->ncidr = l->nnames[ACCESS_PAT_CIDR];
	l->names[ACCESS_PAT_CIDR] = NULL;
	l->nnames[ACCESS_PAT_CIDR] = 0;
	for (size_t i = 0; i < l->ncidr; i++) {
		if (i && l->cidr[i]->family == l->cidr[i - 1]->family &&
		    l->cidr[i]->prefix == l->cidr[i - 1]->prefix) {
			l->groups[l->ngroups - 1].end = i + 1;
			continue;
		}
		struct access_cidr_group *g = realloc(l->groups, (l->ngroups + 1) * sizeof(*g));
		if (!g)
			goto oom;
		l->groups = g;
		g[l->ngroups++] = (struct access_cidr_group){l->cidr[i]->family, l->cidr[i]->prefix,
							     i, i + 1};
	}
	l->indexed = 1;
	return 0;
oom:
	index_free(l);
	return -1;
}

/* ---- matching ---- */

const struct access_entry *access_match_client(const struct access_list *l, const char *addr)
{
	unsigned char a[16], m[16];
	if (!l->indexed || !addr || !l->ncidr)
		return NULL;
	size_t n = strcspn(addr, "%");	/* no zone index */
	int fam = addr_parse(addr, n, a);
	if (!fam)
		return NULL;
	for (size_t g = 0; g < l->ngroups; g++) {
		const struct access_cidr_group *grp = &l->groups[g];
		if (grp->family != fam)
			continue;
		memcpy(m, a, 16);
		mask(m, grp->prefix, fam == 4 ? 4 : 16);
		size_t lo = grp->start, hi = grp->end;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int c = memcmp(l->cidr[mid]->addr, m, 16);
			if (c == 0)
				return l->cidr[mid];
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	return NULL;
}

static const struct access_entry *find_key(const struct access_list *l, enum access_pattern t,
					   const char *s, size_t len)
{
	const struct access_entry *const *v = l->names[t];
	size_t lo = 0, hi = l->nnames[t];
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = key_cmp(v[mid]->key, s, len);
		if (c == 0)
			return v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The domain d (n octets, no trailing dot): exact, then the longest
 * parent domain listed as .domain. */
static const struct access_entry *match_domain(const struct access_list *l, const char *d,
					       size_t n)
{
	const struct access_entry *e;
	if (n == 0)
		return NULL;
	if ((e = find_key(l, ACCESS_PAT_DOMAIN, d, n)))
		return e;
	for (size_t i = 0; i + 1 < n; i++)
		if (d[i] == '.' && (e = find_key(l, ACCESS_PAT_SUBDOMAIN, d + i + 1, n - i - 1)))
			return e;
	return NULL;
}

const struct access_entry *access_match_helo(const struct access_list *l, const char *name)
{
	if (!l->indexed || !name)
		return NULL;
	size_t n = strlen(name);
	if (n > 1 && name[n - 1] == '.')
		n--;
	return match_domain(l, name, n);
}

static const struct access_entry *match_address(const struct access_list *l, const char *addr)
{
	const struct access_entry *e;
	if (!l->indexed || !addr)
		return NULL;
	if (!*addr)
		return l->null_sender;
	const char *at = strrchr(addr, '@');
	size_t n = strlen(addr);
	if (at && n > 1 && addr[n - 1] == '.')
		n--;		/* user@example.org. */
	if ((e = find_key(l, ACCESS_PAT_ADDRESS, addr, n)))
		return e;
	size_t llen = at ? (size_t)(at - addr) : n;	/* "postmaster": all local */
	if (llen && (e = find_key(l, ACCESS_PAT_LOCAL, addr, llen)))
		return e;
	return at ? match_domain(l, at + 1, n - llen - 1) : NULL;
}

const struct access_entry *access_match_sender(const struct access_list *l, const char *addr)
{
	return match_address(l, addr);
}

const struct access_entry *access_match_recipient(const struct access_list *l, const char *addr)
{
	return addr && *addr ? match_address(l, addr) : NULL;
}

const struct access_entry *access_match(const struct access_list *l, const char *value)
{
	switch (l->kind) {
	case ACCESS_LIST_CLIENT: return access_match_client(l, value);
	case ACCESS_LIST_HELO: return access_match_helo(l, value);
	case ACCESS_LIST_SENDER: return access_match_sender(l, value);
	case ACCESS_LIST_RECIPIENT: return access_match_recipient(l, value);
	default: return NULL;
	}
}

const char *access_entry_describe(const struct access_list *l, const struct access_entry *e,
				  char *buf, size_t len)
{
	if (e->line > 0)
		snprintf(buf, len, "%s %s (file %s line %d)", access_list_name(l->kind), e->pattern,
			 e->source, e->line);
	else
		snprintf(buf, len, "%s %s (%s)", access_list_name(l->kind), e->pattern, e->source);
	return buf;
}

/* ---- the filter ---- */

#define C(field) offsetof(struct access_conf, field)

static const struct list_def {
	const char *symbol;	/* ACCESS_<symbol>[_ALLOW|_DENY] */
	const char *file_opt;
	size_t list_off, file_off;
} list_defs[ACCESS_LIST__COUNT] = {
	{"CLIENT", "client_file", C(client), C(client_file)},
	{"HELO", "helo_file", C(helo), C(helo_file)},
	{"SENDER", "sender_file", C(sender), C(sender_file)},
	{"RECIPIENT", "recipient_file", C(recipient), C(recipient_file)},
};

#define ACTIONS_DOC \
	" ACTION is allow (exempt from later filters), reject [\"5.x.x text\"], " \
	"tempfail [\"4.x.x text\"], discard, or score N (a symbol scored N, no decision)."
#define FILE_DOC(what) \
	"File of " what " entries, one per line, with blank lines and # comments; read at " \
	"start and on reload, after the inline entries. A relative name is relative to " \
	"the directory of the file that sets it. Unset: none."

static const struct moat_opt access_opts[] = {
	{"client", MOAT_OPT_STR_LIST, C(client), 0, "{}", 0, 0, 0, NULL,
	 "Entries \"ADDRESS[/PREFIX] ACTION\" checked against the client's IP address at "
	 "connect, e.g. \"192.0.2.0/24 reject\", \"2001:db8::/32 score 2.5\"; an IPv4-mapped "
	 "IPv6 client matches IPv4 entries; the longest prefix wins." ACTIONS_DOC},
	{"client_file", MOAT_OPT_STR, C(client_file), 0, NULL, 0, 0, 0, NULL, FILE_DOC("client")},
	{"helo", MOAT_OPT_STR_LIST, C(helo), 0, "{}", 0, 0, 0, NULL,
	 "Entries \"NAME ACTION\" checked against the HELO/EHLO name: host.example.org (that "
	 "name), .example.org (any name below example.org, not example.org itself), "
	 "[192.0.2.1] (an address literal); an exact name wins over .domain, the longest "
	 ".domain over shorter ones." ACTIONS_DOC},
	{"helo_file", MOAT_OPT_STR, C(helo_file), 0, NULL, 0, 0, 0, NULL, FILE_DOC("helo")},
	{"sender", MOAT_OPT_STR_LIST, C(sender), 0, "{}", 0, 0, 0, NULL,
	 "Entries \"PATTERN ACTION\" checked against the MAIL FROM address: user@example.org "
	 "(that address), user@ (that local part at any domain), example.org (the domain), "
	 ".example.org (any domain below it), <> (the null sender); the most specific wins, "
	 "in that order, and allow exempts the message." ACTIONS_DOC},
	{"sender_file", MOAT_OPT_STR, C(sender_file), 0, NULL, 0, 0, 0, NULL, FILE_DOC("sender")},
	{"recipient", MOAT_OPT_STR_LIST, C(recipient), 0, "{}", 0, 0, 0, NULL,
	 "Entries \"PATTERN ACTION\" checked against each RCPT TO address, with the patterns "
	 "of the sender list except <>; reject and tempfail refuse that recipient only, "
	 "allow exempts the message." ACTIONS_DOC},
	{"recipient_file", MOAT_OPT_STR, C(recipient_file), 0, NULL, 0, 0, 0, NULL,
	 FILE_DOC("recipient")},
};

/* The file part of a "file:line" location. */
static void where_file(const char *where, char *buf, size_t len)
{
	snprintf(buf, len, "%s", where);
	char *colon = strrchr(buf, ':');
	if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1))
		*colon = '\0';
}

struct file_report {
	struct moat_section_ctx *ctx;
	const char *opt, *path;
	int reported, more;
};

static void report_line(void *arg, int line, const char *what)
{
	struct file_report *r = arg;
	if (r->reported++ < MAX_FILE_ERRORS)
		moat_section_error(r->ctx, r->opt, "%s:%d: %s", r->path, line, what);
	else
		r->more++;
}

static int read_list_file(struct access_list *l, const char *opt, const char *name,
			  struct moat_section_ctx *ctx)
{
	char dir[600], path[1200], err[1400];
	if (name[0] == '/') {
		snprintf(path, sizeof(path), "%s", name);
	} else {
		where_file(moat_section_where(ctx, opt), dir, sizeof(dir));
		snprintf(path, sizeof(path), "%s/%s", dirname(dir), name);
	}
	struct file_report r = {ctx, opt, path, 0, 0};
	int bad = access_list_read_file(l, path, report_line, &r, err, sizeof(err));
	if (bad < 0) {
		moat_section_error(ctx, opt, "%s", err);
		return 1;
	}
	if (r.more)
		moat_section_error(ctx, opt, "%s: %d more bad lines not shown", path, r.more);
	return bad;
}

static void access_release(void *data)
{
	struct access_conf *conf = data;
	for (size_t k = 0; k < ACCESS_LIST__COUNT; k++)
		access_list_free(&conf->lists[k]);
}

static int access_prepare(void *data, struct moat_section_ctx *ctx)
{
	struct access_conf *conf = data;
	char label[600], err[512];
	int bad = 0;

	for (size_t k = 0; k < ACCESS_LIST__COUNT; k++) {
		const struct list_def *d = &list_defs[k];
		const char *name = list_names[k];
		struct access_list *l = &conf->lists[k];
		const struct moat_str_list *in =
			(const struct moat_str_list *)(const void *)((const char *)data + d->list_off);
		const char *file = *(char *const *)(const void *)((const char *)data + d->file_off);

		access_list_init(l, (enum access_list_kind)k);
		if (in->n) {
			where_file(moat_section_where(ctx, name), label, sizeof(label));
			const char *base = strrchr(label, '/');
			base = base ? base + 1 : label;
			for (size_t i = 0; i < in->n; i++)
				if (access_list_parse(l, in->v[i], base, 0, err, sizeof(err)) < 0) {
					moat_section_error(ctx, name, "entry %zu \"%s\": %s", i + 1,
							   in->v[i], err);
					bad++;
				}
		}
		if (file && *file)
			bad += read_list_file(l, d->file_opt, file, ctx);
		if (access_list_index(l) < 0) {
			moat_section_error(ctx, name, "out of memory");
			bad++;
		}
	}
	return bad ? -1 : 0;
}

static enum moat_filter_status check(struct moat_filter_call *call, enum access_list_kind kind,
				     const char *value)
{
	const struct access_conf *conf = moat_call_conf(call);
	const struct access_list *l = &conf->lists[kind];
	const struct access_entry *e = access_match(l, value);
	char why[600], sym[40];

	if (!e)
		return MOAT_FILTER_CONTINUE;
	access_entry_describe(l, e, why, sizeof(why));
	snprintf(sym, sizeof(sym), "ACCESS_%s%s", list_defs[kind].symbol,
		 e->action == ACCESS_SCORE ? "" : e->action == ACCESS_ALLOW ? "_ALLOW" : "_DENY");
	moat_call_symbol(call, sym, e->action == ACCESS_SCORE ? e->score : 0, "%s", why);
	switch (e->action) {
	case ACCESS_ALLOW:
		moat_call_decide(call, MOAT_ACTION_ACCEPT, 0, "%s", why);
		break;
	case ACCESS_REJECT:
		moat_call_decide(call, MOAT_ACTION_REJECT,
				 moat_call_stage(call) == MOAT_STAGE_CONNECT ? 554 : 550, "%s",
				 e->text ? e->text : "5.7.1 Access denied");
		break;
	case ACCESS_TEMPFAIL:
		moat_call_decide(call, MOAT_ACTION_TEMPFAIL, 451, "%s",
				 e->text ? e->text : "4.7.1 Try again later");
		break;
	case ACCESS_DISCARD:
		moat_call_decide(call, MOAT_ACTION_DISCARD, 0, "%s", why);
		break;
	case ACCESS_SCORE:
		break;
	}
	return MOAT_FILTER_CONTINUE;
}

static enum moat_filter_status access_client(struct moat_filter_call *call)
{
	return check(call, ACCESS_LIST_CLIENT, moat_call_ctx(call)->client_addr);
}

static enum moat_filter_status access_helo(struct moat_filter_call *call)
{
	return check(call, ACCESS_LIST_HELO, moat_call_ctx(call)->helo);
}

static enum moat_filter_status access_sender(struct moat_filter_call *call)
{
	return check(call, ACCESS_LIST_SENDER, moat_call_ctx(call)->mail_from);
}

static enum moat_filter_status access_recipient(struct moat_filter_call *call)
{
	return check(call, ACCESS_LIST_RECIPIENT, moat_call_ctx(call)->rcpt);
}

const struct moat_filter moat_filter_access = {
	.name = "access",
	.doc = "Allow and deny lists by client address or network, HELO name, sender and "
	       "recipient, each entry with an action (allow, reject, tempfail, discard) or a score.",
	.opts = access_opts,
	.nopts = NELEM(access_opts),
	.conf_size = sizeof(struct access_conf),
	.prepare = access_prepare,
	.release = access_release,
	.stage = {
		[MOAT_STAGE_CONNECT] = access_client,
		[MOAT_STAGE_HELO] = access_helo,
		[MOAT_STAGE_MAIL] = access_sender,
		[MOAT_STAGE_RCPT] = access_recipient,
	},
};
