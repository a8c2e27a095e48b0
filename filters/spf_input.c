/*
 * spf_input.c - bound and normalise the SPF identities before libspf2
 * sees them (see spf_input.h for the rules and why).
 *
 * Owns nothing: pure functions over caller buffers. libidn2 allocates
 * the A-label form, which is copied out and freed here.
 */
#include "spf_input.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest U-label input handed to libidn2: 4 octets per character. */
#define UTF8_DOMAIN_MAX (4 * SPF_DOMAIN_MAX)

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int is_ldh(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Checks an ASCII name of n octets (no trailing dot) and copies it to
 * out in lower case. */
static int ascii_domain(const char *d, size_t n, char *out, size_t outlen)
{
	size_t label = 0, labels = 0;

	if (n == 0 || n > SPF_DOMAIN_MAX || n + 1 > outlen)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			continue;
		}
		if (!is_ldh(c))
			return -1;
		if (label++ == 0)
			labels++;
		if (label > SPF_LABEL_MAX)
			return -1;
	}
	if (label == 0 || labels < 2)
		return -1;	/* empty last label; or a single label (RFC 7208 4.3) */
	for (size_t i = 0; i < n; i++)
		out[i] = (char)lower((unsigned char)d[i]);
	out[n] = '\0';
	return 0;
}

int spf_domain_alabel(const char *in, char *out, size_t outlen)
{
	size_t n;
	int ascii = 1;

	if (outlen)
		out[0] = '\0';
	if (!in || outlen < 2)
		return -1;
	n = strnlen(in, UTF8_DOMAIN_MAX + 2);
	if (n > 1 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > UTF8_DOMAIN_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)in[i] >= 0x80)
			ascii = 0;
		else if (in[i] == '\0')
			return -1;
	if (ascii) {
		if (ascii_domain(in, n, out, outlen) < 0) {
			out[0] = '\0';
			return -1;
		}
		return 0;
	}
	/* U-labels: libidn2 checks UTF-8, maps (UTS #46), checks IDNA2008 */
	char buf[UTF8_DOMAIN_MAX + 1];
	uint8_t *alabel = NULL;
	memcpy(buf, in, n);
	buf[n] = '\0';
	if (idn2_lookup_u8((const uint8_t *)buf, &alabel, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)
	    != IDN2_OK || !alabel) {
		idn2_free(alabel);
		return -1;
	}
	int rc = ascii_domain((const char *)alabel, strlen((const char *)alabel), out, outlen);
	idn2_free(alabel);
	if (rc < 0)
		out[0] = '\0';
	return rc;
}

enum spf_input_status spf_sender_prepare(const char *sender, char *out, size_t outlen,
					 char *domain, size_t domainlen)
{
	const char *at, *dom;
	size_t llen;
	int ascii = 1;

	if (outlen)
		out[0] = '\0';
	if (domainlen)
		domain[0] = '\0';
	if (!sender || !*sender || outlen < SPF_SENDER_MAX + 1 || domainlen < SPF_DOMAIN_MAX + 1)
		return SPF_INPUT_NONE;
	at = strrchr(sender, '@');
	dom = at ? at + 1 : sender;
	llen = at ? (size_t)(at - sender) : 0;
	if (spf_domain_alabel(dom, domain, domainlen) < 0)
		return SPF_INPUT_NONE;
	if (llen > SPF_LOCAL_MAX)
		return SPF_INPUT_PERMERROR;
	for (size_t i = 0; i < llen; i++) {
		unsigned char c = (unsigned char)sender[i];
		if (c < 0x20 || c == 0x7f)
			return SPF_INPUT_PERMERROR;
		if (c >= 0x80)
			ascii = 0;
	}
	if (llen == 0 || !ascii)
		snprintf(out, outlen, "postmaster@%s", domain);
	else
		snprintf(out, outlen, "%.*s@%s", (int)llen, sender, domain);
	return SPF_INPUT_OK;
}

int spf_helo_prepare(const char *helo, char *out, size_t outlen)
{
	if (outlen)
		out[0] = '\0';
	if (!helo || !*helo || helo[0] == '[')
		return -1;
	return spf_domain_alabel(helo, out, outlen);
}

int spf_ip_normalize(const char *in, char *out, size_t outlen)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	unsigned char a[16];
	char buf[SPF_IP_MAX + 1];
	size_t n;

	if (outlen)
		out[0] = '\0';
	if (!in || outlen < SPF_IP_MAX)
		return -1;
	n = strnlen(in, sizeof(buf));
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, in, n + 1);
	if (inet_pton(AF_INET, buf, a) == 1)
		return inet_ntop(AF_INET, a, out, (socklen_t)outlen) ? 4 : -1;
	if (inet_pton(AF_INET6, buf, a) != 1)
		return -1;
	if (memcmp(a, mapped, sizeof(mapped)) == 0)
		return inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen) ? 4 : -1;
	return inet_ntop(AF_INET6, a, out, (socklen_t)outlen) ? 6 : -1;
}

size_t spf_text_sanitize(const char *in, char *out, size_t outlen)
{
	size_t o = 0, max;
	int space = 0;

	if (!outlen)
		return 0;
	max = outlen - 1 < SPF_EXP_MAX ? outlen - 1 : SPF_EXP_MAX;
	for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o < max; p++) {
		unsigned char c = *p;
		if (c <= 0x20 || c == 0x7f) {	/* spaces, CR, LF, controls: one space */
			space = o > 0;
			continue;
		}
		if (c >= 0x80)
			continue;
		if (space) {
			if (o + 1 >= max)
				break;
			out[o++] = ' ';
			space = 0;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return o;
}
