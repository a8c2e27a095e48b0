/*
 * addr.c - parse and print the socket addresses of moat.conf.
 *
 * Resolution goes through getaddrinfo(); nothing is cached or owned.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int moat_addr_parse(const char *spec, struct moat_addr *out, char *err,
		    size_t errlen)
{
	char host[256];
	const char *port;
	struct addrinfo hints, *res = NULL;
	int rc;

	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':') {
			snprintf(err, errlen, "expected \"[address]:port\", got \"%s\"", spec);
			return -1;
		}
		if ((size_t)(end - spec - 1) >= sizeof(host)) {
			snprintf(err, errlen, "address too long");
			return -1;
		}
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = '\0';
		port = end + 2;
	} else {
		const char *colon = strrchr(spec, ':');
		if (!colon || strchr(spec, ':') != colon) {
			snprintf(err, errlen, "expected \"host:port\" or \"[v6address]:port\", got \"%s\"", spec);
			return -1;
		}
		if ((size_t)(colon - spec) >= sizeof(host)) {
			snprintf(err, errlen, "address too long");
			return -1;
		}
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	char *endp;
	long p = strtol(port, &endp, 10);
	if (*port == '\0' || *endp != '\0' || p < 1 || p > 65535) {
		snprintf(err, errlen, "expected a port number 1..65535 in \"%s\"", spec);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (strcmp(host, "*") == 0 || host[0] == '\0') {
		hints.ai_flags |= AI_PASSIVE;
		hints.ai_family = AF_INET;
	}
	rc = getaddrinfo(hints.ai_flags & AI_PASSIVE ? NULL : host, port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
		return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

const char *moat_addr_host(const struct sockaddr *sa, char *buf, size_t len)
{
	if (getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
			: sizeof(struct sockaddr_in), buf, (socklen_t)len, NULL, 0,
			NI_NUMERICHOST) != 0)
		snprintf(buf, len, "unknown");
	return buf;
}

int moat_addr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	return 0;
}

const char *moat_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN + 8];
	moat_addr_host(sa, host, sizeof(host));
	if (sa->sa_family == AF_INET6)
		snprintf(buf, len, "[%s]:%d", host, moat_addr_port(sa));
	else
		snprintf(buf, len, "%s:%d", host, moat_addr_port(sa));
	return buf;
}

int moat_addr_equal(const struct moat_addr *a, const struct moat_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}
