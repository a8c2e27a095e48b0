/*
 * dns.c - `moat dns NAME [TYPE]`: one lookup through moat's resolver,
 * with the configured nameservers, timeout and DNSSEC settings, printed
 * the way filters will see it.
 *
 * Output: "status: ...", "rcode: N", "ttl: N" (answers), "secure: yes|no",
 * one line per record ("A 127.0.0.2", "TXT \"...\"", "MX 10 host"), and
 * "time: N ms". Exit status: 0 ok, 1 nxdomain or nodata, 2 a temporary
 * failure (servfail, timeout, error), 64 usage, 78 configuration.
 * Owns the loop and resolver of the run.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "resolver.h"

struct lookup {
	struct event_base *base;
	int done;
	int status;
};

static void print_txt(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\%03o", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void on_answer(void *arg, const struct moat_dns_answer *a)
{
	struct lookup *l = arg;
	char buf[INET6_ADDRSTRLEN];

	printf("status: %s\nrcode: %d\n", moat_dns_status_name(a->status), a->rcode);
	if (a->status == MOAT_DNS_OK)
		printf("ttl: %d\n", a->ttl);
	printf("secure: %s\n", a->secure ? "yes" : "no");
	for (size_t i = 0; a->status == MOAT_DNS_OK && i < a->n; i++) {
		printf("%s ", moat_dns_type_name(a->type));
		switch (a->type) {
		case MOAT_DNS_A:
			printf("%s", inet_ntop(AF_INET, &a->a[i], buf, sizeof(buf)));
			break;
		case MOAT_DNS_AAAA:
			printf("%s", inet_ntop(AF_INET6, &a->aaaa[i], buf, sizeof(buf)));
			break;
		case MOAT_DNS_TXT:
			print_txt(a->txt[i]);
			break;
		case MOAT_DNS_MX:
			printf("%d %s", a->mx[i].preference, a->mx[i].host);
			break;
		default:
			printf("%s", a->names[i]);
		}
		printf("\n");
	}
	printf("time: %.0f ms\n", a->ms);
	l->status = a->status == MOAT_DNS_OK ? 0 : moat_dns_temporary(a->status) ? 2 : 1;
	l->done = 1;
	event_base_loopbreak(l->base);
}

int moat_cli_dns(const struct moat_config *c, int argc, char **argv)
{
	char err[512];
	int type = MOAT_DNS_A;
	struct lookup l = {NULL, 0, 2};

	if (argc < 2 || argc > 3 || (argc == 3 && moat_dns_type_parse(argv[2], &type) < 0)) {
		fprintf(stderr, "usage: moat dns NAME [A|AAAA|TXT|MX|PTR|NS|CNAME]\n");
		return 64;
	}
	const struct moat_resolver_conf *rc = moat_config_section(c, "resolver");
	l.base = event_base_new();
	struct moat_resolver *r = l.base && rc ? moat_resolver_new(l.base, rc, err, sizeof(err)) : NULL;
	if (!r) {
		fprintf(stderr, "moat dns: %s\n", rc ? err : "no resolver configuration");
		if (l.base)
			event_base_free(l.base);
		return 78;
	}
	if (!moat_resolver_query(r, argv[1], type, 0, on_answer, &l)) {
		fprintf(stderr, "moat dns: out of memory\n");
	} else {
		while (!l.done)
			event_base_loop(l.base, EVLOOP_ONCE);
	}
	moat_resolver_free(r);
	event_base_free(l.base);
	return l.status;
}
