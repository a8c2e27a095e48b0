/*
 * dmarc_align.c - organizational domains and identifier alignment (RFC
 * 7489 3.1, 3.2) over the Public Suffix List.
 *
 * libpsl's psl_latest() reads the newest list the system has (Debian's
 * publicsuffix package) and falls back to the list compiled into
 * libpsl. The list is loaded on first use, once per process
 * (pthread_once: the milter's threads and moatd's loop may ask), and kept
 * to the end; it is read-only afterwards.
 *
 * Owns the process's psl_ctx_t.
 */
#include "dmarc_align.h"

#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ascii.h"

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static psl_ctx_t *psl;
static const char *psl_source = "none";

static void psl_load(void)
{
	psl = psl_latest(NULL);
	if (psl) {
		psl_source = psl_builtin() == psl ? "libpsl's built-in list" : "the system list";
		return;
	}
	psl = (psl_ctx_t *)psl_builtin();
	if (psl)
		psl_source = "libpsl's built-in list";
}

int dmarc_psl_loaded(const char **source)
{
	pthread_once(&psl_once, psl_load);
	if (source)
		*source = psl_source;
	return psl != NULL;
}

int dmarc_org_domain(const char *domain, char *out, size_t len)
{
	const char *reg = NULL;
	size_t n = strlen(domain);

	while (n && domain[n - 1] == '.')
		n--;
	if (n >= len) {
		if (len)
			out[0] = '\0';
		return -1;
	}
	memcpy(out, domain, n);
	out[n] = '\0';
	ascii_lower_str(out);
	if (!dmarc_psl_loaded(NULL))
		return -1;
	reg = psl_registrable_domain(psl, out);
	if (reg && reg != out)
		memmove(out, reg, strlen(reg) + 1);
	return 0;
}

int dmarc_aligned(const char *id, const char *from, enum dmarc_mode mode)
{
	char a[256], b[256];

	if (!id || !from || !*id || !*from)
		return 0;
	if (strcasecmp(id, from) == 0)
		return 1;
	if (mode == DMARC_STRICT)
		return 0;
	if (dmarc_org_domain(id, a, sizeof(a)) < 0 || dmarc_org_domain(from, b, sizeof(b)) < 0)
		return 0;
	return strcmp(a, b) == 0;
}
