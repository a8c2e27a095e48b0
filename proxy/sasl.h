/*
 * sasl.h - what moat needs to know of SASL (RFC 4954 AUTH) to relay it:
 * the mechanisms it relays, whether a client's response line is well
 * formed, and the user name a response carries.
 *
 * moat never checks a password: the upstream does. It reads the
 * authentication identity out of the client's responses only to tell
 * filters and the log who authenticated once the upstream said 235.
 * Pure functions: no I/O, no global state; buffers holding decoded
 * responses are wiped before they are freed.
 */
#ifndef MOAT_SASL_H
#define MOAT_SASL_H

#include <stddef.h>

/* Mechanisms moat relays (others an upstream lists are not offered). */
enum sasl_mech {
	SASL_MECH_PLAIN = 1 << 0,
	SASL_MECH_LOGIN = 1 << 1,
	SASL_MECH_CRAM_MD5 = 1 << 2,
	SASL_MECH_SCRAM_SHA_1 = 1 << 3,
	SASL_MECH_SCRAM_SHA_256 = 1 << 4,
	SASL_MECH_XOAUTH2 = 1 << 5,
	SASL_MECH_OAUTHBEARER = 1 << 6,
};

/* The mechanism named by name[0..len) (case-insensitive), or 0. */
unsigned sasl_mech_lookup(const char *name, size_t len);
/* The canonical name of one mechanism bit ("PLAIN"), or NULL. */
const char *sasl_mech_name(unsigned mech);
/* "PLAIN LOGIN" for the mechanisms in mask, into buf. */
const char *sasl_mechs_format(unsigned mask, char *buf, size_t len);

#define SASL_MAX_LINE 12288	/* RFC 4954 4: a line of an AUTH exchange */

/* 1 if line is a well-formed client response: base64, "=" (empty) or
 * "*" (cancel). */
int sasl_response_valid(const char *line, size_t len);

/* The user name (authentication identity) in the client's step-th
 * response (0: the initial response or the first answer to a 334), for
 * mech. Returns 1 with the name in out, 0 if this step does not carry
 * it, -1 if the response cannot be decoded or the name is unfit for a
 * log line (control characters, spaces, too long). */
int sasl_user_from_response(unsigned mech, unsigned step, const char *b64, size_t len,
			    char *out, size_t outlen);

#endif
