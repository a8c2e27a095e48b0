/*
 * dkim.h - the DKIM filter (RFC 6376, RFC 8301, RFC 8463): verifies
 * every signature of inbound mail and signs outbound mail.
 *
 * Verification: the message is hashed as it streams in (the data hook:
 * dkim_verify.h), the keys are fetched through moat's resolver at the end
 * of the message, and each signature's result becomes a symbol, a score
 * and an Authentication-Results entry (dkim=pass header.d= header.s=
 * header.b=).
 *
 * Signing: mail from a submission listener, an authenticated session or
 * a client in sign_networks is signed with the keys the signing table
 * gives for its From: address (the envelope sender when From: gives
 * none), after every other header edit (the seal hook: dkim_sign.h), so
 * the signature covers the header as it leaves.
 *
 * The `dkim` section: options below, `key NAME { domain selector file }`
 * subsections. moat_filter_dkim is what the pipeline runs.
 */
#ifndef MOAT_DKIM_H
#define MOAT_DKIM_H

#include <stddef.h>

#include "dkim_canon.h"
#include "dkim_sign.h"
#include "dkim_signtable.h"
#include "dkim_verify.h"
#include "filter.h"
#include "net.h"

extern const struct moat_filter moat_filter_dkim;
void dkim_register(void);

#define DKIM_MAX_NETS 256
#define DKIM_MAX_KEYS 64

/* `key NAME { }` as read */
struct dkim_key_conf {
	char *name;		/* the title */
	char *domain;
	char *selector;
	char *file;
};

/* The `dkim` section. */
struct dkim_conf {
	struct moat_filter_common common;
	int verify;
	long max_signatures;
	char *body_length;		/* "score", "refuse" */
	double score_pass, score_fail, score_neutral, score_policy;
	double score_temperror, score_permerror, score_none;
	double score_body_length, score_weak_key;
	long weak_key_bits;
	int sign_authenticated;
	struct moat_str_list sign_networks;
	struct moat_str_list signing_table;
	struct moat_str_list sign_headers;
	struct moat_str_list oversign_headers;
	char *canonicalization;		/* "relaxed/relaxed" */
	long signature_ttl;
	int add_missing_headers;
	struct moat_items items;	/* struct dkim_key_conf */
	/* derived by prepare() */
	enum dkim_l_policy l_policy;
	enum dkim_canon hcanon, bcanon;
	size_t nnets;
	struct moat_net nets[DKIM_MAX_NETS];
	size_t nkeys;
	struct dkim_sign_key *keys[DKIM_MAX_KEYS];
	struct dkim_signtable table;
	const char **headers, **oversign;	/* the lists in effect */
	size_t nheaders, noversign;
};

#endif
