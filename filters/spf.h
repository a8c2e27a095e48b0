/*
 * spf.h - the SPF filter (RFC 7208): checks the MAIL FROM identity (and
 * the HELO identity; for the null sender the HELO identity is the one,
 * as postmaster@HELO) at MAIL, in SPF worker processes (spf_pool.h),
 * and turns the result into a symbol and score, Authentication-Results
 * and Received-SPF, and optionally a reject (fail) or tempfail
 * (temperror).
 *
 * moat_filter_spf is what the pipeline runs; its section is `spf`. The
 * functions below are public for `moat spf` (cli/spf.c, which goes
 * through the same preparation, pool and worker as the daemon) and the
 * unit tests: what is prepared for a check, how results map to
 * symbols, scores and actions, and the Received-SPF header text.
 */
#ifndef MOAT_SPF_H
#define MOAT_SPF_H

#include <stddef.h>

#include "filter.h"
#include "net.h"
#include "spf_proto.h"

extern const struct moat_filter moat_filter_spf;

#define SPF_MAX_NETS 256	/* skip_networks entries */


/* The `spf` section. */
struct spf_conf {
	struct moat_filter_common common;
	int reject_fail;
	char *temperror;		/* "score", "tempfail" */
	int received_spf;
	long workers;
	struct moat_str_list skip_networks;
	int check_helo;
	double score[SPF_RES__COUNT];	/* score_pass ... score_permerror */
	/* derived */
	int temperror_tempfail;
	size_t nnets;
	struct moat_net nets[SPF_MAX_NETS];
};


/* One check as prepared from a session: what goes to a worker, and the
 * results known before (identities libspf2 must not see). */
struct spf_prepared {
	struct spf_proto_check check;	/* flags 0: nothing for a worker */
	int null_sender;
	/* the primary identity: MAIL FROM, or HELO for the null sender */
	const char *identity;		/* "mailfrom" or "helo" */
	char domain[SPF_DOMAIN_MAX + 1];	/* its domain (A-label) or "" */
	char envelope_from[SPF_SENDER_MAX + 1];	/* sanitised, for headers */
	char helo_text[SPF_DOMAIN_MAX + 1];	/* sanitised HELO as given (spaces kept) */
	int have_primary;		/* primary result known already */
	struct spf_proto_identity primary;
	int helo_checked;		/* a separate HELO check runs */
};

/* Prepares a check of client ip, sender ("" null sender) and helo (may
 * be NULL). check_helo: also check HELO for a non-null sender. Returns
 * 0, or -1 when the client address is not an IP address. */
int spf_prepare(const char *ip, const char *sender, const char *helo, int check_helo,
		struct spf_prepared *out);

/* The primary result after a worker's answer (or the known one). */
const struct spf_proto_identity *spf_primary(const struct spf_prepared *pr,
					     const struct spf_proto_result *res);

/* "SPF_PASS", "SPF_HELO_FAIL"... */
const char *spf_symbol(enum spf_result r, int helo);

/* What a result does under conf: the score, and the action with its
 * reply (NONE: only the score). */
struct spf_action {
	double score;
	enum moat_action action;	/* NONE, REJECT, TEMPFAIL */
	int code;
	char text[SPF_EXP_MAX + 64];	/* "5.7.23 ..." */
};
void spf_action_for(const struct spf_conf *c, const struct spf_prepared *pr,
		    const struct spf_proto_identity *id, struct spf_action *out);

/* The Received-SPF field value (RFC 7208 9.1) into out: result, comment,
 * client-ip, envelope-from, helo, receiver, identity, mechanism (when
 * known), problem (errors). Returns the length (truncated to fit). */
size_t spf_received_spf(char *out, size_t len, const struct spf_prepared *pr,
			const struct spf_proto_identity *id, const char *receiver);

/* The RFC 8601 result for the primary identity: "spf=pass
 * smtp.mailfrom=example.org" (props are what moat_call_auth_result()
 * takes: "smtp.mailfrom=example.org"). */
void spf_auth_props(const struct spf_prepared *pr, char *out, size_t len);

#endif
