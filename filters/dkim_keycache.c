/*
 * dkim_keycache.c - parsed DKIM key records by their text (what and why:
 * dkim_keycache.h).
 *
 * An open table of DKIM_KEYCACHE_SLOTS entries, each the record's text
 * (a malloc'ed copy), its FNV-1a hash and the parsed record holding one
 * EVP_PKEY reference. A lookup compares hashes, then texts; a hit hands
 * out a new reference (EVP_PKEY_up_ref, thread-safe). A miss parses
 * outside the lock and then takes the least recently used slot. One
 * mutex over the table: a lookup is a scan of 256 hashes, far below the
 * cost of a parse.
 *
 * Owns the entries; freed at exit by the process (the table is static).
 */
#include "dkim_keycache.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"

struct entry {
	char *text;
	size_t len;
	uint64_t hash;
	unsigned long long used;	/* tick of the last use; 0 = empty */
	struct dkim_keyrec rec;
};

static struct {
	pthread_mutex_t lock;
	struct entry e[DKIM_KEYCACHE_SLOTS];
	unsigned long long tick, hits, misses;
} C = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* The entry holding txt (hash h), or NULL. Under the lock. */
static struct entry *find(uint64_t h, const char *txt, size_t len)
{
	for (size_t i = 0; i < DKIM_KEYCACHE_SLOTS; i++) {
		struct entry *e = &C.e[i];
		if (e->used && e->hash == h && e->len == len && memcmp(e->text, txt, len) == 0)
			return e;
	}
	return NULL;
}

/* A copy of rec with a reference of its own. */
static void hand_out(const struct dkim_keyrec *rec, struct dkim_keyrec *out)
{
	*out = *rec;
	EVP_PKEY_up_ref(out->pkey);
}

int dkim_keycache_parse(const char *txt, size_t len, struct dkim_keyrec *out, const char **why)
{
	if (len > DKIM_KEYCACHE_TEXT_MAX)
		return dkim_keyrec_parse(txt, len, out, why);
	uint64_t h = moat_fnv1a(txt, len);

	pthread_mutex_lock(&C.lock);
	struct entry *hit = find(h, txt, len);
	if (hit) {
		hit->used = ++C.tick;
		C.hits++;
		hand_out(&hit->rec, out);
		pthread_mutex_unlock(&C.lock);
		return 0;
	}
	C.misses++;
	pthread_mutex_unlock(&C.lock);

	int rc = dkim_keyrec_parse(txt, len, out, why);
	if (rc != 0)
		return rc;
	char *copy = malloc(len ? len : 1);
	if (!copy)
		return 0;	/* parsed; just not kept */
	memcpy(copy, txt, len);

	pthread_mutex_lock(&C.lock);
	struct entry *victim = NULL;
	if (!find(h, txt, len)) {	/* else another thread kept it meanwhile */
		victim = &C.e[0];
		for (size_t i = 1; i < DKIM_KEYCACHE_SLOTS; i++)
			if (C.e[i].used < victim->used)
				victim = &C.e[i];
	}
	if (victim) {
		free(victim->text);
		dkim_keyrec_clear(&victim->rec);
		victim->text = copy;
		victim->len = len;
		victim->hash = h;
		victim->used = ++C.tick;
		hand_out(out, &victim->rec);
		copy = NULL;
	}
	pthread_mutex_unlock(&C.lock);
	free(copy);
	return 0;
}

void dkim_keycache_stats(unsigned long long *hits, unsigned long long *misses)
{
	pthread_mutex_lock(&C.lock);
	*hits = C.hits;
	*misses = C.misses;
	pthread_mutex_unlock(&C.lock);
}
