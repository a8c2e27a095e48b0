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
#include "redis_link.h"
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
	long redis_max_reply;
	struct moat_str_list redis_servers;	/* several: a hash ring */
	struct moat_str_list redis_replicas;
	struct moat_str_list sentinels;
	char *sentinel_master;
	int sentinel_replica_reads;
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
	{"redis_max_reply", MOAT_OPT_INT, S(redis_max_reply), 1048576, NULL, 1024, 536870912, 0, NULL,
	 "redis: octets one reply may take; a larger one answers \"unknown\" and its "
	 "connection is reset, so a bad value or server cannot make moatd allocate without bound."},
	{"redis_servers", MOAT_OPT_STR_LIST, S(redis_servers), 0, "{}", 0, 0, 0, NULL,
	 "redis: several servers as \"host:port\"; keys are spread over them by consistent "
	 "hashing, and the keys of a server that is down answer \"unknown\" (they do not move). "
	 "Used instead of redis_server when set."},
	{"redis_replicas", MOAT_OPT_STR_LIST, S(redis_replicas), 0, "{}", 0, 0, 0, NULL,
	 "redis: replicas of redis_server as \"host:port\"; reads go to them (round robin, the "
	 "primary when none is up), writes to the primary. Replication is asynchronous: a read "
	 "may miss a write of the last moments."},
	{"sentinels", MOAT_OPT_STR_LIST, S(sentinels), 0, "{}", 0, 0, 0, NULL,
	 "redis: Redis Sentinel servers as \"host:port\"; the primary is the master they name "
	 "sentinel_master, and a failover is followed. Used instead of redis_server when set."},
	{"sentinel_master", MOAT_OPT_STR, S(sentinel_master), 0, "", 0, 0, 0, NULL,
	 "redis: the master's name in the sentinels (sentinel monitor NAME ...)."},
	{"sentinel_replica_reads", MOAT_OPT_BOOL, S(sentinel_replica_reads), 0, NULL, 0, 0, 0, NULL,
	 "redis: with sentinels, send reads to the healthy replicas they list (as redis_replicas)."},
};

static int check_list(struct moat_section_ctx *ctx, const char *opt,
		      const struct moat_str_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		char host[256];
		int port;
		if (redis_addr_parse(l->v[i], host, sizeof(host), &port) < 0) {
			moat_section_error(ctx, opt, "\"%s\" is not host:port", l->v[i]);
			return -1;
		}
	}
	return 0;
}

static int prepare(void *data, struct moat_section_ctx *ctx)
{
	struct store_conf *c = data;
	const char *spec = c->redis_server ? c->redis_server : "";

	if (redis_addr_parse(spec, c->host, sizeof(c->host), &c->port) < 0) {
		moat_section_error(ctx, "redis_server", "\"%s\" is not host:port", spec);
		return -1;
	}
	if (strlen(c->key_prefix ? c->key_prefix : "") > 64) {
		moat_section_error(ctx, "key_prefix", "longer than 64 characters");
		return -1;
	}
	if (check_list(ctx, "redis_servers", &c->redis_servers) < 0 ||
	    check_list(ctx, "redis_replicas", &c->redis_replicas) < 0 ||
	    check_list(ctx, "sentinels", &c->sentinels) < 0)
		return -1;
	if (c->sentinels.n && !(c->sentinel_master && *c->sentinel_master)) {
		moat_section_error(ctx, "sentinels", "needs sentinel_master");
		return -1;
	}
	if (c->sentinels.n && c->redis_servers.n) {
		moat_section_error(ctx, "sentinels", "cannot be combined with redis_servers");
		return -1;
	}
	if (c->redis_replicas.n && (c->redis_servers.n > 1 || c->sentinels.n)) {
		moat_section_error(ctx, "redis_replicas", "only with one server (redis_server); "
				   "with sentinels use sentinel_replica_reads");
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
	char *sig;		/* what made it (conf_sig()) */
	char desc[300];		/* moat_store_describe() */
	long timeout_ms;
	int have;
} cur;

/* Appends s and a separator to buf; -1 when out of memory. */
static int sig_add(char **buf, size_t *len, const char *v)
{
	size_t n = strlen(v ? v : "");
	char *b = realloc(*buf, *len + n + 2);
	if (!b)
		return -1;
	memcpy(b + *len, v ? v : "", n);
	b[*len + n] = '\x1f';
	b[*len + n + 1] = '\0';
	*buf = b;
	*len += n + 1;
	return 0;
}

static int sig_list(char **buf, size_t *len, const struct moat_str_list *l)
{
	char n[32];
	snprintf(n, sizeof(n), "%zu", l->n);
	int rc = sig_add(buf, len, n);
	for (size_t i = 0; rc == 0 && i < l->n; i++)
		rc = sig_add(buf, len, l->v[i]);
	return rc;
}

/* Every option that makes a store, in one string: two configurations
 * make the same store when their strings are equal. NULL when out of
 * memory. */
static char *conf_sig(const struct store_conf *c)
{
	char *b = NULL, num[160];
	size_t len = 0;
	snprintf(num, sizeof(num), "%ld %ld %ld %ld %d %d", c->max_keys, c->redis_db, c->timeout_ms,
		 c->redis_max_reply, c->port, c->sentinel_replica_reads);
	if (sig_add(&b, &len, c->backend) < 0 || sig_add(&b, &len, num) < 0 ||
	    sig_add(&b, &len, c->host) < 0 || sig_add(&b, &len, c->redis_socket) < 0 ||
	    sig_add(&b, &len, c->redis_user) < 0 || sig_add(&b, &len, c->redis_password) < 0 ||
	    sig_add(&b, &len, c->key_prefix) < 0 || sig_add(&b, &len, c->sentinel_master) < 0 ||
	    sig_list(&b, &len, &c->redis_servers) < 0 || sig_list(&b, &len, &c->redis_replicas) < 0 ||
	    sig_list(&b, &len, &c->sentinels) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

static void describe(const struct store_conf *c, char *buf, size_t len)
{
	if (strcmp(c->backend, "redis") != 0)
		snprintf(buf, len, "memory (max_keys %ld)", c->max_keys);
	else if (c->sentinels.n)
		snprintf(buf, len, "redis sentinel master %s (%zu sentinels) db %ld", c->sentinel_master,
			 c->sentinels.n, c->redis_db);
	else if (c->redis_servers.n > 1)
		snprintf(buf, len, "redis %zu servers (hash ring) db %ld", c->redis_servers.n,
			 c->redis_db);
	else if (c->redis_servers.n == 1)
		snprintf(buf, len, "redis %s db %ld", c->redis_servers.v[0], c->redis_db);
	else if (c->redis_socket && *c->redis_socket)
		snprintf(buf, len, "redis unix:%s db %ld", c->redis_socket, c->redis_db);
	else if (c->redis_replicas.n)
		snprintf(buf, len, "redis %s db %ld, %zu replicas for reads", c->redis_server,
			 c->redis_db, c->redis_replicas.n);
	else
		snprintf(buf, len, "redis %s db %ld", c->redis_server, c->redis_db);
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
		.max_reply = (size_t)c->redis_max_reply,
		.servers = (const char *const *)c->redis_servers.v,
		.nservers = c->redis_servers.n,
		.replicas = (const char *const *)c->redis_replicas.v,
		.nreplicas = c->redis_replicas.n,
		.sentinels = (const char *const *)c->sentinels.v,
		.nsentinels = c->sentinels.n,
		.sentinel_master = c->sentinel_master,
		.sentinel_replica_reads = c->sentinel_replica_reads,
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
	char *sig = conf_sig(c);
	if (!sig) {
		snprintf(err, errlen, "store: out of memory");
		return -1;
	}
	if (cur.store && cur.have && strcmp(cur.sig, sig) == 0) {
		free(sig);
		return 0;
	}
	struct moat_store *s = store_new(base, c);
	if (!s) {
		free(sig);
		snprintf(err, errlen, "store: out of memory");
		return -1;
	}
	if (cur.store) {
		/* answers come within the old deadline; free it after that */
		long ms = cur.timeout_ms + 2000;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		if (event_base_once(base, -1, EV_TIMEOUT, free_retired, cur.store, &tv) < 0)
			moat_log(LOG_WARNING, "store: the replaced store is kept (out of memory)");
	}
	cur.store = s;
	free(cur.sig);
	cur.sig = sig;
	cur.timeout_ms = c->timeout_ms;
	describe(c, cur.desc, sizeof(cur.desc));
	cur.have = 1;
	moat_log(LOG_INFO, "store: %s", cur.desc);
	return 0;
}

struct moat_store *moat_store_current(void)
{
	return cur.store;
}

const char *moat_store_describe(char *buf, size_t len)
{
	snprintf(buf, len, "%s", cur.have ? cur.desc : "none");
	return buf;
}

void moat_store_shutdown(void)
{
	moat_store_free(cur.store);
	cur.store = NULL;
	free(cur.sig);
	cur.sig = NULL;
	cur.have = 0;
}
