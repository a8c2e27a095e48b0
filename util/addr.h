/*
 * addr.h - socket addresses as moat.conf writes them: "host:port",
 * "[v6addr]:port", "*:port".
 *
 * Fills caller-supplied structures; owns nothing.
 */
#ifndef MOAT_ADDR_H
#define MOAT_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct moat_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Parses and resolves spec (numeric addresses, or a host name resolved
 * now). Returns 0, or -1 with a reason in err. */
int moat_addr_parse(const char *spec, struct moat_addr *out, char *err,
		    size_t errlen);

/* Numeric address without port ("192.0.2.1", "2001:db8::1") into buf. */
const char *moat_addr_host(const struct sockaddr *sa, char *buf, size_t len);
int moat_addr_port(const struct sockaddr *sa);
/* "192.0.2.1:25" or "[2001:db8::1]:25" into buf. */
const char *moat_addr_format(const struct sockaddr *sa, char *buf, size_t len);
int moat_addr_equal(const struct moat_addr *a, const struct moat_addr *b);

#endif
