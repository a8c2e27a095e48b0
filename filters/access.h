/*
 * access.h - the access filter: allow and deny lists by client address
 * or network, HELO name, sender and recipient.
 *
 * moat_filter_access is what the pipeline runs. The list functions below
 * (parse, read a list file, index, match) are public for the unit tests
 * and the moat CLI; they know nothing of the pipeline or the
 * configuration loader, and report errors in caller-supplied buffers.
 *
 * An entry is `PATTERN ACTION [ARG]`:
 *   PATTERN  client list: 192.0.2.1, 192.0.2.0/24, 2001:db8::1,
 *            2001:db8::/32 (an IPv4-mapped client ::ffff:192.0.2.1
 *            matches IPv4 entries);
 *            helo list: host.example.org (the name), .example.org (any
 *            subdomain, not the name itself), [192.0.2.1] (a literal);
 *            sender and recipient lists: user@example.org (the address),
 *            user@ (that local part, any domain), example.org (the domain
 *            part), .example.org (any subdomain of it), and in the sender
 *            list <> (the null sender).
 *   ACTION   allow | reject ["5.x.x TEXT"] | tempfail ["4.x.x TEXT"] |
 *            discard | score N
 * A `#` outside quotes starts a comment. Names compare ASCII
 * case-insensitively. The most specific entry wins (longest prefix;
 * address > user@ > domain > longest .subdomain), the first listed among
 * equals.
 *
 * An access_list owns its entries, their strings and its lookup arrays;
 * access_list_free() releases them. Entries returned by the match
 * functions are borrowed from the list.
 */
#ifndef MOAT_ACCESS_H
#define MOAT_ACCESS_H

#include <stddef.h>

#include "filter.h"

extern const struct moat_filter moat_filter_access;

enum access_list_kind {
	ACCESS_LIST_CLIENT = 0,
	ACCESS_LIST_HELO,
	ACCESS_LIST_SENDER,
	ACCESS_LIST_RECIPIENT,
	ACCESS_LIST__COUNT
};

enum access_action {
	ACCESS_ALLOW = 0,	/* exempt from later filters */
	ACCESS_REJECT,		/* 5xx */
	ACCESS_TEMPFAIL,	/* 4xx */
	ACCESS_DISCARD,		/* accept, relay nothing */
	ACCESS_SCORE,		/* add a score, decide nothing */
};

enum access_pattern {
	ACCESS_PAT_CIDR = 0,	/* client: address or network */
	ACCESS_PAT_ADDRESS,	/* user@example.org */
	ACCESS_PAT_LOCAL,	/* user@ */
	ACCESS_PAT_DOMAIN,	/* example.org: the name, or an address's domain */
	ACCESS_PAT_SUBDOMAIN,	/* .example.org */
	ACCESS_PAT_NULL,	/* <> */
};

struct access_entry {
	char *pattern;		/* as written */
	enum access_pattern type;
	enum access_action action;
	double score;		/* ACCESS_SCORE */
	char *text;		/* REJECT/TEMPFAIL reply text; NULL: the default */
	const char *source;	/* list file path or config file name (the list's) */
	int line;		/* line in the list file; 0: inline in the config */
	size_t order;		/* position in the list; equals go to the lowest */
	char *key;		/* names: lower case, no leading/trailing dot */
	int family;		/* CIDR: 4 or 6 */
	unsigned prefix;	/* CIDR: prefix length */
	unsigned char addr[16];	/* CIDR: the network, host bits zero */
};

/* Fields after n are private to access.c. */
struct access_list {
	enum access_list_kind kind;
	struct access_entry *v;
	size_t n, cap;
	char **sources;		/* owned source names */
	size_t nsources;
	int indexed;		/* access_list_index() ran since the last change */
	const struct access_entry **cidr;	/* by family, prefix desc, address */
	size_t ncidr;
	struct access_cidr_group {
		int family;
		unsigned prefix;
		size_t start, end;	/* range of cidr[] */
	} *groups;
	size_t ngroups;
	const struct access_entry **names[ACCESS_PAT_NULL];	/* by key, per type */
	size_t nnames[ACCESS_PAT_NULL];
	const struct access_entry *null_sender;
};

/* The `access { ... }` section (moat_config_section(c, "access")). */
struct access_conf {
	struct moat_filter_common common;	/* must be first */
	struct moat_str_list client, helo, sender, recipient;	/* inline entries */
	char *client_file, *helo_file, *sender_file, *recipient_file;
	/* derived by prepare(): inline entries first, then the file's */
	struct access_list lists[ACCESS_LIST__COUNT];
};

/* "client", "helo", "sender", "recipient". */
const char *access_list_name(enum access_list_kind kind);

void access_list_init(struct access_list *l, enum access_list_kind kind);
/* Frees what the list owns; safe on a zeroed or freed list. */
void access_list_free(struct access_list *l);

/* Parses one entry and appends it. source names where it came from (a
 * config file name, or a list file's path; copied), line its line in a
 * list file or 0. Returns 1 (added), 0 (blank or only a comment: nothing
 * added), or -1 with what was expected in err. */
int access_list_parse(struct access_list *l, const char *text, const char *source, int line,
		      char *err, size_t errlen);

/* Reads a list file: one entry per line, blank lines and # comments
 * allowed. Each bad line is passed to report(arg, line, what) and reading
 * goes on. Returns the number of bad lines, or -1 with the reason in err
 * if the file cannot be read. */
int access_list_read_file(struct access_list *l, const char *path,
			  void (*report)(void *arg, int line, const char *what), void *arg,
			  char *err, size_t errlen);

/* Builds the lookup arrays; call after the last parse, before matching.
 * Returns 0, or -1 when out of memory. */
int access_list_index(struct access_list *l);

/* The entry that decides value, or NULL (also for an unindexed list).
 * client: "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1";
 * helo: the HELO/EHLO argument; sender: the MAIL FROM address without
 * <> ("" for the null sender); recipient: the RCPT TO address. */
const struct access_entry *access_match_client(const struct access_list *l, const char *addr);
const struct access_entry *access_match_helo(const struct access_list *l, const char *name);
const struct access_entry *access_match_sender(const struct access_list *l, const char *addr);
const struct access_entry *access_match_recipient(const struct access_list *l, const char *addr);
/* Dispatches on l->kind. */
const struct access_entry *access_match(const struct access_list *l, const char *value);

/* "client 192.0.2.0/24 (file /etc/moat/client.txt line 3)" or
 * "sender .example.org (access.conf)" into buf. */
const char *access_entry_describe(const struct access_list *l, const struct access_entry *e,
				  char *buf, size_t len);

/* "allow", "reject", "tempfail", "discard", "score". */
const char *access_action_name(enum access_action a);

#endif
