/*
 * dnsbl.h - the DNS list filter: DNSBL (client addresses), RHSBL (HELO
 * name, MAIL FROM domain, From: header domain) and DNSWL (the same with a
 * negative score), RFC 5782.
 *
 * moat_filter_dnsbl is what the pipeline runs (registered by
 * dnsbl_register(); its `zone NAME { }` subsections are declared through
 * its .sub). The functions below are public for the unit
 * tests and `moat dnsbl` (cli/dnsbl.c): query names, return codes, TXT
 * sanitising, the RFC 5782 section 5 health rules, and one zone's
 * asynchronous lookup and test-point check through moat's resolver. They
 * know nothing of the pipeline and report errors in caller buffers.
 *
 * A struct dnsbl_zone is flat (no pointers): lookups and health checks
 * copy it, so nothing in flight points into a configuration that a
 * reload frees.
 */
#ifndef MOAT_DNSBL_H
#define MOAT_DNSBL_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h"
#include "resolver.h"

extern const struct moat_filter moat_filter_dnsbl;

/* Registers the filter and its `zone` subsections (at start). */
void dnsbl_register(void);

#define DNSBL_NAME_MAX 253	/* a domain name, no trailing dot */
#define DNSBL_MAX_CODES 16	/* codes entries per zone */
#define DNSBL_MAX_ZONES 64	/* zones per configuration */
#define DNSBL_TXT_MAX 200	/* TXT reason kept, after sanitising */
#define DNSBL_TEXT_MAX 250	/* reply text (fits a moat_decision) */

enum dnsbl_kind {
	DNSBL_CLIENT = 0,	/* the client's address, at CONNECT */
	DNSBL_HELO,		/* the HELO/EHLO name, at HELO */
	DNSBL_SENDER,		/* the MAIL FROM domain, at MAIL */
	DNSBL_FROM,		/* the From: header's domain, at end of message */
	DNSBL_KIND__COUNT
};

/* "client", "helo", "sender", "from"; dnsbl_kind_parse returns 0 or -1. */
const char *dnsbl_kind_name(enum dnsbl_kind k);
int dnsbl_kind_parse(const char *s, enum dnsbl_kind *out);

/* One entry of `codes`: an address range in 127.0.0.0/8 (one address:
 * lo == hi), or a bitmask on the last octet. */
struct dnsbl_code {
	int is_mask;
	uint32_t lo, hi;	/* host order */
	unsigned mask;		/* 1..255 */
	int has_score;
	double score;
};

/* A zone as the filter uses it (derived from `zone NAME { }`). */
struct dnsbl_zone {
	char name[DNSBL_NAME_MAX + 1];	/* lower case, no trailing dot */
	enum dnsbl_kind kind;
	int reject;			/* action = reject */
	int txt;			/* fetch TXT of a hit */
	double score;
	size_t ncodes;
	struct dnsbl_code codes[DNSBL_MAX_CODES];
	char symbol[64];
	char reject_text[DNSBL_TEXT_MAX + 1];	/* "" = the default */
};

/* One `zone NAME { }` as read (struct moat_items of the section). */
struct dnsbl_zone_conf {
	char *name;		/* the title */
	char *lookup;
	char *action;
	struct moat_str_list codes;
	double score;
	int txt;
	char *reject_text;
	char *symbol;
};

/* The `dnsbl { }` section (moat_config_section(c, "dnsbl")). */
struct dnsbl_conf {
	struct moat_filter_common common;	/* must be first */
	long wait;		/* ms */
	long recheck;		/* seconds */
	struct moat_items items;	/* struct dnsbl_zone_conf */
	/* derived by prepare() */
	size_t nzones;
	struct dnsbl_zone *zones;
};

/* ---- names ---------------------------------------------------------- */

/* The query name of an IP address in zone: IPv4 "d.c.b.a.zone", IPv6
 * the 32 nibbles reversed (RFC 5782 2.4); an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is looked up as IPv4. Returns 4 or 6, or -1 (not an
 * address, or the name does not fit). */
int dnsbl_ip_query(const char *addr, const char *zone, char *out, size_t outlen);
/* The same for 16 octets of IPv6, never mapped (the ::FFFF:7F00:2 test
 * point). Returns 0 or -1. */
int dnsbl_ip6_query(const unsigned char a[16], const char *zone, char *out, size_t outlen);
/* "name.zone" for a name list: trailing dot dropped, lower-cased. -1 for
 * an empty name, an address literal ([...]) or bare IP address, a name
 * that is not a host name, or a result longer than 253. */
int dnsbl_name_query(const char *name, const char *zone, char *out, size_t outlen);
/* The domain of an address ("user@Example.ORG" -> "example.org"); -1
 * for <> (""), no '@', or an address literal. */
int dnsbl_addr_domain(const char *addr, char *out, size_t outlen);
/* The domain of the first address of a From: header value (unfolded or
 * not: "Name <u@d>", "u@d (comment)", "\"a@b\" <u@d>"). Returns 0 or -1. */
int dnsbl_from_domain(const char *value, size_t len, char *out, size_t outlen);
/* Checks a zone name (LDH labels, 1..63 octets each, 253 in all; a
 * trailing dot allowed) and writes it lower-cased, without the dot. */
int dnsbl_zone_name(const char *in, char *out, size_t outlen, char *err, size_t errlen);
/* DNSBL_<ZONE upper case, '.' and '-' as '_'>. */
void dnsbl_default_symbol(const char *zone, char *out, size_t outlen);

/* ---- codes and answers ---------------------------------------------- */

/* Parses "127.0.0.2", "127.0.0.2-127.0.0.11", "&4", each with an
 * optional score ("127.0.0.2 3", "&8 -1.5"). Returns 0 or -1 with what
 * was expected in err. */
int dnsbl_code_parse(const char *text, struct dnsbl_code *out, char *err, size_t errlen);

/* 127.255.255.0/24: a list refusing the query (Spamhaus answers
 * 127.255.255.254/255 to open and public resolvers). Never a hit. */
int dnsbl_refused_code(uint32_t a);
/* 127.0.0.0/8, the range answers of a working list come from. */
int dnsbl_in_loopback(uint32_t a);

/* Which answers (A records, host order) count for zone z. With codes,
 * the score of a hit is the sum over the code entries that some answer
 * matches (each entry counts once; an entry without a score gives the
 * zone's); without codes, any answer in 127.0.0.0/8 counts once, with
 * the zone's score. Refused codes and answers outside 127.0.0.0/8 never
 * count. Returns 1 (a hit, *score set) or 0. */
int dnsbl_codes_match(const struct dnsbl_zone *z, const uint32_t *a, size_t n, double *score);

/* Copies untrusted text (a TXT record) for logs and SMTP replies:
 * control characters and CR/LF become spaces, octets above 0x7e '?',
 * runs of spaces one space, no leading/trailing space, at most
 * DNSBL_TXT_MAX characters (and outlen - 1). Returns the length. */
size_t dnsbl_txt_sanitize(const char *in, char *out, size_t outlen);

/* The reply text of a hit: the zone's reject_text with $value,
 * $zone and $txt expanded, or the default "5.7.1 Service
 * unavailable; Client host [ADDR] blocked using ZONE; TXT" (Helo
 * command, Sender address, From address for name lists; "; TXT" only
 * when there is one). txt must be sanitised. */
void dnsbl_reply_text(const struct dnsbl_zone *z, const char *value, const char *txt,
		      char *out, size_t outlen);
/* Checks a reject_text: a 5.x.x enhanced code, then text; only the
 * $value, $zone, $txt variables. Returns 0 or -1. */
int dnsbl_reply_text_check(const char *t, char *err, size_t errlen);

/* ---- one zone's lookup ---------------------------------------------- */

enum dnsbl_status {
	DNSBL_NOT_LISTED = 0,	/* NXDOMAIN or NODATA, or answers that don't count */
	DNSBL_LISTED,		/* an answer counts: score set */
	DNSBL_FAILED,		/* a DNS failure: never "not listed" */
	DNSBL_REFUSED,		/* only refused codes (127.255.255.x) */
	DNSBL_OUT_OF_RANGE,	/* an answer outside 127.0.0.0/8: a broken zone */
};

const char *dnsbl_status_name(enum dnsbl_status st);

struct dnsbl_result {
	enum dnsbl_status status;
	enum moat_dns_status dns;	/* of the A query */
	char qname[DNSBL_NAME_MAX + 1];
	char codes[160];		/* the A answers, "127.0.0.2,127.0.0.4" */
	char txt[DNSBL_TXT_MAX + 1];	/* sanitised; "" none */
	double score;			/* LISTED */
	double ms;
};

/* Classifies the A answer a (as the resolver gave it) for zone z. */
void dnsbl_classify(const struct dnsbl_zone *z, const struct moat_dns_answer *a,
		    struct dnsbl_result *r);

struct dnsbl_lookup;
typedef void (*dnsbl_lookup_cb)(void *arg, const struct dnsbl_result *r);

/* Asks qname's A record in z (a copy is kept), then for a hit with
 * z->txt its TXT; cb(arg, result) runs once, later, on the loop, unless
 * cancelled, and the lookup is freed when cb returns (do not cancel it
 * then). timeout_ms 0: the resolver's. NULL when out of memory. */
struct dnsbl_lookup *dnsbl_lookup_start(struct moat_resolver *r, const struct dnsbl_zone *z,
					const char *qname, long timeout_ms, dnsbl_lookup_cb cb,
					void *arg);
/* The result so far, once the A answer is in (the TXT may still be on
 * its way): 1 and *out filled, else 0. */
int dnsbl_lookup_partial(const struct dnsbl_lookup *l, struct dnsbl_result *out);
void dnsbl_lookup_cancel(struct dnsbl_lookup *l);

/* ---- health (RFC 5782 section 5) ------------------------------------- */

enum dnsbl_health {
	DNSBL_HEALTH_UNKNOWN = 0,	/* not checked, or the check failed */
	DNSBL_HEALTH_OK,
	DNSBL_HEALTH_BROKEN,
};

const char *dnsbl_health_name(enum dnsbl_health h);

/* One test point's answer. */
struct dnsbl_point {
	enum moat_dns_status dns;
	size_t n;
	uint32_t a[8];		/* host order */
};

/* Test points: client lists [0] 2.0.0.127 (listed), [1] 1.0.0.127 (not),
 * [2] ::FFFF:7F00:2, [3] ::FFFF:7F00:1 (checked only when [2] is listed);
 * name lists [0] TEST, [1] INVALID ([2], [3] unused). */
#define DNSBL_POINTS 4
/* The test point names of z (n of them: 4 or 2). */
size_t dnsbl_test_points(const struct dnsbl_zone *z, char names[DNSBL_POINTS][DNSBL_NAME_MAX + 1]);

/* The rules: any answer outside 127.0.0.0/8 or a failed test point:
 * BROKEN, why set; all answered as required: OK; a DNS failure or a
 * refused code (and nothing wrong otherwise): UNKNOWN, why set. */
enum dnsbl_health dnsbl_health_eval(const struct dnsbl_zone *z,
				    const struct dnsbl_point p[DNSBL_POINTS], char *why,
				    size_t whylen);

struct dnsbl_probe;
typedef void (*dnsbl_probe_cb)(void *arg, const struct dnsbl_zone *z, enum dnsbl_health h,
			       const char *why);
/* Asks z's test points in parallel; cb runs once, later, unless
 * cancelled, and the probe is freed when cb returns. NULL when out of
 * memory or z's name leaves no room for its test points. */
struct dnsbl_probe *dnsbl_probe_start(struct moat_resolver *r, const struct dnsbl_zone *z,
				      dnsbl_probe_cb cb, void *arg);
void dnsbl_probe_cancel(struct dnsbl_probe *p);

#endif
