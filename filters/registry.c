/*
 * registry.c - the filters moat ships, registered at start by moatd and
 * the moat CLI (tests add their own with moat_filter_register()).
 *
 * Owns nothing; the list is the one place a new filter is added.
 */
#include "access.h"
#include "debuglog.h"
#include "dkim.h"
#include "dmarc.h"
#include "dnsbl.h"
#include "filter.h"
#include "greylist.h"
#include "pipeline.h"
#include "ratelimit.h"
#include "reputation.h"
#include "resolver.h"
#include "spf.h"
#include "store_conf.h"

void moat_filters_register_builtin(void)
{
	moat_filter_register(&moat_filter_access);
	dnsbl_register();
	moat_filter_register(&moat_filter_spf);
	dkim_register();
	dmarc_register();
	moat_filter_register(&moat_filter_reputation);
	moat_filter_register(&moat_filter_ratelimit);
	moat_filter_register(&moat_filter_greylist);
	moat_scoring_register();
	moat_resolver_register();
	moat_store_register();
	moat_debuglog_register();
}
