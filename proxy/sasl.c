/*
 * sasl.c - SASL mechanisms moat relays, client response checks, and the
 * user name each mechanism's first response carries (sasl.h).
 *
 *	PLAIN		[authzid] NUL authcid NUL passwd: the authcid
 *	LOGIN		the first response is the user name
 *	CRAM-MD5	"user hexdigest"
 *	SCRAM-*		"gs2-header,n=user,r=nonce" (=2C and =3D unescaped)
 *	XOAUTH2		"user=NAME ^A auth=Bearer ..."
 *	OAUTHBEARER	"n,a=NAME,^A..." (the authzid, when given)
 *
 * Base64 is decoded with OpenSSL's EVP_DecodeBlock. Owns nothing beyond
 * one call; decoded responses (which may hold passwords) are wiped.
 */
#include "sasl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"
#include "nelem.h"

static const struct {
	const char *name;
	unsigned bit;
} mechs[] = {
	{"PLAIN", SASL_MECH_PLAIN},
	{"LOGIN", SASL_MECH_LOGIN},
	{"CRAM-MD5", SASL_MECH_CRAM_MD5},
	{"SCRAM-SHA-1", SASL_MECH_SCRAM_SHA_1},
	{"SCRAM-SHA-256", SASL_MECH_SCRAM_SHA_256},
	{"XOAUTH2", SASL_MECH_XOAUTH2},
	{"OAUTHBEARER", SASL_MECH_OAUTHBEARER},
};

unsigned sasl_mech_lookup(const char *name, size_t len)
{
	for (size_t i = 0; i < NELEM(mechs); i++)
		if (word_eq(name, len, mechs[i].name))
			return mechs[i].bit;
	return 0;
}

const char *sasl_mech_name(unsigned mech)
{
	for (size_t i = 0; i < NELEM(mechs); i++)
		if (mechs[i].bit == mech)
			return mechs[i].name;
	return NULL;
}

const char *sasl_mechs_format(unsigned mask, char *buf, size_t len)
{
	size_t o = 0;
	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < NELEM(mechs) && o < len; i++)
		if (mask & mechs[i].bit)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? " " : "", mechs[i].name);
	return buf;
}

static int b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int sasl_response_valid(const char *line, size_t len)
{
	if (len == 1 && (line[0] == '*' || line[0] == '='))
		return 1;
	if (len == 0 || len % 4 != 0 || len > SASL_MAX_LINE)
		return 0;
	size_t pad = 0;
	while (pad < 2 && line[len - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char((unsigned char)line[i]))
			return 0;
	return 1;
}

/* Decodes b64 into a new buffer (NUL-terminated after *n octets). */
static unsigned char *decode(const char *b64, size_t len, size_t *n)
{
	if (len == 1 && b64[0] == '=') {
		*n = 0;
		return calloc(1, 1);
	}
	if (!sasl_response_valid(b64, len) || len > SASL_MAX_LINE)
		return NULL;
	unsigned char *out = malloc(len / 4 * 3 + 1);
	if (!out)
		return NULL;
	int k = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
	if (k < 0) {
		free(out);
		return NULL;
	}
	size_t pad = (len >= 1 && b64[len - 1] == '=') + (len >= 2 && b64[len - 2] == '=');
	*n = (size_t)k - pad;
	out[*n] = '\0';
	return out;
}

static void wipe(unsigned char *p, size_t n)
{
	if (p) {
		OPENSSL_cleanse(p, n);
		free(p);
	}
}

/* Copies the name [s, s+n) to out if it is fit for a log line. */
static int take_name(const unsigned char *s, size_t n, char *out, size_t outlen)
{
	if (n == 0 || n > 255 || n >= outlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] == 0x7f || s[i] == '"')
			return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 1;
}

/* SCRAM's saslname: "=2C" is ',', "=3D" is '='. */
static int scram_name(const unsigned char *s, size_t n, char *out, size_t outlen)
{
	unsigned char tmp[256];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (o >= sizeof(tmp))
			return -1;
		if (s[i] == '=' && i + 2 < n && (memcmp(s + i, "=2C", 3) == 0 ||
						    memcmp(s + i, "=3D", 3) == 0)) {
			tmp[o++] = s[i + 2] == 'C' ? ',' : '=';
			i += 2;
		} else if (s[i] == '=') {
			return -1;
		} else {
			tmp[o++] = s[i];
		}
	}
	return take_name(tmp, o, out, outlen);
}

/* The value of "key" in a comma list starting at s (SCRAM, GS2). */
static const unsigned char *attr(const unsigned char *s, size_t n, const char *key, size_t *vlen)
{
	size_t kl = strlen(key), i = 0;
	while (i < n) {
		size_t e = i;
		while (e < n && s[e] != ',' && s[e] != 0x01)
			e++;
		if (e - i > kl && memcmp(s + i, key, kl) == 0) {
			*vlen = e - i - kl;
			return s + i + kl;
		}
		i = e + 1;
	}
	return NULL;
}

int sasl_user_from_response(unsigned mech, unsigned step, const char *b64, size_t len,
			    char *out, size_t outlen)
{
	size_t n = 0, vl = 0;
	unsigned char *d;
	const unsigned char *v;
	int rc = -1;

	if (step != 0 || (len == 1 && b64[0] == '*'))
		return 0;
	if (!(mech & (SASL_MECH_PLAIN | SASL_MECH_LOGIN | SASL_MECH_CRAM_MD5 |
		      SASL_MECH_SCRAM_SHA_1 | SASL_MECH_SCRAM_SHA_256 | SASL_MECH_XOAUTH2 |
		      SASL_MECH_OAUTHBEARER)))
		return 0;
	if (!(d = decode(b64, len, &n)))
		return -1;
	switch (mech) {
	case SASL_MECH_PLAIN: {
		unsigned char *z1 = memchr(d, '\0', n);
		unsigned char *z2 = z1 ? memchr(z1 + 1, '\0', n - (size_t)(z1 + 1 - d)) : NULL;
		if (z2)
			rc = take_name(z1 + 1, (size_t)(z2 - z1 - 1), out, outlen);
		break;
	}
	case SASL_MECH_LOGIN:
		rc = take_name(d, n, out, outlen);
		break;
	case SASL_MECH_CRAM_MD5: {
		unsigned char *sp = memchr(d, ' ', n);
		if (sp)
			rc = take_name(d, (size_t)(sp - d), out, outlen);
		break;
	}
	case SASL_MECH_SCRAM_SHA_1:
	case SASL_MECH_SCRAM_SHA_256: {
		/* skip the GS2 header: "n," or "y," or "p=cb," then "[a=authzid]," */
		unsigned char *c1 = memchr(d, ',', n);
		unsigned char *c2 = c1 ? memchr(c1 + 1, ',', n - (size_t)(c1 + 1 - d)) : NULL;
		if (c2 && (v = attr(c2 + 1, n - (size_t)(c2 + 1 - d), "n=", &vl)))
			rc = scram_name(v, vl, out, outlen);
		break;
	}
	case SASL_MECH_XOAUTH2:
		if ((v = attr(d, n, "user=", &vl)))
			rc = take_name(v, vl, out, outlen);
		break;
	case SASL_MECH_OAUTHBEARER:
		if ((v = attr(d, n, "a=", &vl)))
			rc = scram_name(v, vl, out, outlen);
		else
			rc = 0;
		break;
	default:
		rc = 0;
	}
	wipe(d, n + 1);
	return rc;
}
