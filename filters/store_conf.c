/*
 * store_conf.c - the `store` section of moat.conf (which backend, and
 * how to reach Redis) and the store of the running process.
 *
 * The section is applied on the daemon's loop at start and at each
 * reload. While it does not change, the store stays (the embedded one
 * keeps what it learned); when it changes, a new store takes over at
 * once and the old one is freed after its last possible answer (its
 * deadline, plus a margin), so no filter waiting on it is left without
 * its callback. Owns the current store and the retired ones until
 * they are freed.
 */
#include "store_conf.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "store_redis.h"

struct store_conf {
	char *backend;		/* "memory", "redis" */
	long max_keys;
	char *redis_server;	/* "host:port" */
	char *redis_socket;	/* unix socket path; "" = TCP */
	char *redis_user;
	char *redis_password;
	long redis_db;
	long timeout_ms;
	char *key_prefix;
	/* derived */
	char host[256];
	int port;
};

static const char *const backend_choices[] = {"memory", "redis", NULL};

#define S(field) offsetof(struct store_conf, field)
static const struct moat_opt store_opts[] = {
	{"backend", MOAT_OPT_STR, S(backend), 0, "memory", 0, 0, 0, backend_choices,
	 "Where moat keeps what it learns (reputation counts): \"memory\", in the daemon "
	 "(lost at restart, not shared), or \"redis\", shared by every moat instance that "
	 "uses the same server."},
	{"max_keys", MOAT_OPT_INT, S(max_keys), 100000, NULL, 100, 100000000, 0, NULL,
	 "memory: keys kept at most; the least recently used go first."},
	{"redis_server", MOAT_OPT_STR, S(redis_server), 0, "127.0.0.1:6379", 0, 0, 0, NULL,
	 "redis: the server as \"host:port\" or \"[v6]:port\" (TCP), unless redis_socket is set."},
	{"redis_socket", MOAT_OPT_STR, S(redis_socket), 0, "", 0, 0, 0, NULL,
	 "redis: the server's unix socket path; used instead of redis_server when set."},
	{"redis_user", MOAT_OPT_STR, S(redis_user), 0, "", 0, 0, 0, NULL,
	 "redis: ACL user name (Redis 6 and later) sent with redis_password. Empty: AUTH with "
	 "the password only."},
	{"redis_password", MOAT_OPT_STR, S(redis_password), 0, "", 0, 0, 0, NULL,
	 "redis: the password (AUTH) after each connect. Empty: no AUTH."},
	{"redis_db", MOAT_OPT_INT, S(redis_db), 0, NULL, 0, 1000000, 0, NULL,
	 "redis: the database number (SELECT) after each connect."},
	{"timeout_ms", MOAT_OPT_INT, S(timeout_ms), 200, NULL, 10, 10000, 0, NULL,
	 "redis: milliseconds one operation may take; then it answers \"unknown\" and the "
	 "mail goes on without it."},
	{"key_prefix", MOAT_OPT_STR, S(key_prefix), 0, "moat:", 0, 0, 0, NULL,
	 "redis: put before every key moat uses (docs/redis-keys.md), so several "
	 "installations or applications can share one database."},
};

static int prepare(void *data, struct moat_section_ctx *ctx)
{
	struct store_conf *c = data;
	const char *spec = c->redis_server ? c->redis_server : "";
	const char *colon = strrchr(spec, ':');
	const char *h = spec, *he = colon;
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;

	if (h[0] == '[') {
		h++;
		he = colon && colon > spec && colon[-1] == ']' ? colon - 1 : NULL;
	}
	if (!colon || !he || he <= h || (size_t)(he - h) >= sizeof(c->host) || !colon[1] || *end ||
	    port < 1 || port > 65535) {
		moat_section_error(ctx, "redis_server", "\"%s\" is not host:port", spec);
		return -1;
	}
	memcpy(c->host, h, (size_t)(he - h));
	c->host[he - h] = '\0';
	c->port = (int)port;
	if (strlen(c->key_prefix ? c->key_prefix : "") > 64) {
		moat_section_error(ctx, "key_prefix", "longer than 64 characters");
		return -1;
	}
	return 0;
}

static const struct moat_section_def store_section = {
	.name = "store",
	.doc = "The key/value store for what moat learns: embedded, or a Redis server.",
	.opts = store_opts,
	.nopts = sizeof(store_opts) / sizeof(store_opts[0]),
	.size = sizeof(struct store_conf),
	.prepare = prepare,
};

void moat_store_register(void)
{
	moat_config_register_section(&store_section);
}

/* ---- the current store ---------------------------------------------- */

static struct {
	struct moat_store *store;
	struct store_conf conf;		/* copies of what made it */
	char *strs[6];			/* the copied strings */
	int have;
} cur;

static int same(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static int conf_equal(const struct store_conf *a, const struct store_conf *b)
{
	return same(a->backend, b->backend) && a->max_keys == b->max_keys &&
	       same(a->host, b->host) && a->port == b->port &&
	       same(a->redis_socket, b->redis_socket) && same(a->redis_user, b->redis_user) &&
	       same(a->redis_password, b->redis_password) && a->redis_db == b->redis_db &&
	       a->timeout_ms == b->timeout_ms && same(a->key_prefix, b->key_prefix);
}

static void keep_conf(const struct store_conf *c)
{
	for (size_t i = 0; i < sizeof(cur.strs) / sizeof(cur.strs[0]); i++)
		free(cur.strs[i]);
	cur.conf = *c;
	cur.conf.backend = cur.strs[0] = strdup(c->backend ? c->backend : "");
	cur.conf.redis_socket = cur.strs[1] = strdup(c->redis_socket ? c->redis_socket : "");
	cur.conf.redis_user = cur.strs[2] = strdup(c->redis_user ? c->redis_user : "");
	cur.conf.redis_password = cur.strs[3] = strdup(c->redis_password ? c->redis_password : "");
	cur.conf.key_prefix = cur.strs[4] = strdup(c->key_prefix ? c->key_prefix : "");
	cur.conf.redis_server = cur.strs[5] = strdup(c->redis_server ? c->redis_server : "");
	cur.have = 1;
}

static void free_retired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	moat_store_free(arg);
}

static struct moat_store *store_new(struct event_base *base, const struct store_conf *c)
{
	if (strcmp(c->backend, "redis") != 0)
		return moat_store_memory_new(base, (size_t)c->max_keys);
	struct moat_store_redis_conf rc = {
		.host = (char *)c->host,
		.port = c->port,
		.unix_path = c->redis_socket,
		.user = c->redis_user,
		.password = c->redis_password,
		.timeout_ms = c->timeout_ms,
		.db = c->redis_db,
		.prefix = c->key_prefix,
	};
	return moat_store_redis_new(base, &rc);
}

int moat_store_apply(struct event_base *base, const struct moat_config *conf, char *err,
		     size_t errlen)
{
	const struct store_conf *c = moat_config_section(conf, "store");
	if (!c) {
		snprintf(err, errlen, "no store configuration");
		return -1;
	}
	if (cur.store && cur.have && conf_equal(&cur.conf, c))
		return 0;
	struct moat_store *s = store_new(base, c);
	if (!s) {
		snprintf(err, errlen, "store: out of memory");
		return -1;
	}
	if (cur.store) {
		/* answers come within the old deadline; free it after that */
		long ms = cur.conf.timeout_ms + 2000;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		if (event_base_once(base, -1, EV_TIMEOUT, free_retired, cur.store, &tv) < 0)
			moat_log(LOG_WARNING, "store: the replaced store is kept (out of memory)");
	}
	cur.store = s;
	keep_conf(c);
	char d[300];
	moat_log(LOG_INFO, "store: %s", moat_store_describe(d, sizeof(d)));
	return 0;
}

struct moat_store *moat_store_current(void)
{
	return cur.store;
}

const char *moat_store_describe(char *buf, size_t len)
{
	const struct store_conf *c = &cur.conf;
	if (!cur.have)
		snprintf(buf, len, "none");
	else if (strcmp(c->backend, "redis") != 0)
		snprintf(buf, len, "memory (max_keys %ld)", c->max_keys);
	else if (c->redis_socket && *c->redis_socket)
		snprintf(buf, len, "redis unix:%s db %ld", c->redis_socket, c->redis_db);
	else
		snprintf(buf, len, "redis %s db %ld", c->redis_server, c->redis_db);
	return buf;
}

void moat_store_shutdown(void)
{
	moat_store_free(cur.store);
	cur.store = NULL;
	for (size_t i = 0; i < sizeof(cur.strs) / sizeof(cur.strs[0]); i++) {
		free(cur.strs[i]);
		cur.strs[i] = NULL;
	}
	cur.have = 0;
}
