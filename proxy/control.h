/*
 * control.h - moatd's control socket (control.c): the unix socket on
 * which the moat command talks to the running daemon.
 */
#ifndef MOAT_CONTROL_H
#define MOAT_CONTROL_H

#include <stddef.h>

struct control;
struct event_base;
struct moat_config;
struct server;

struct control_hooks {
	struct server *srv;	/* status; its current configuration */
	/* What SIGHUP does. Returns 0, or -1 with why (one error a line). */
	int (*reload)(char *why, size_t whylen);
};

/* A control socket server on base, listening nowhere yet. */
struct control *control_new(struct event_base *base, const struct control_hooks *hooks);
/* Listens where conf's control_socket says (start, reload): a changed
 * path closes the old socket once the new one is open; "" closes it.
 * Returns 0, or -1 with err (the old socket stays). */
int control_apply(struct control *ctl, const struct moat_config *conf, char *err,
		  size_t errlen);
/* Closes the socket (removing its file) and every connection. */
void control_free(struct control *ctl);

#endif
