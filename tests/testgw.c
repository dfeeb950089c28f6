/* testgw.c - the gateway configuration the in-process gateway suites
 * start from: loopback, any free port, in front of a stand-in upstream,
 * quick timeouts and backoffs. Each suite then sets what it tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "testutil.h"

void tu_gw_config(gw_config *c, uint16_t upstream_port, char *api_key)
{
	gw_config_defaults(c);
	snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
	c->listen_port = 0;
	snprintf(c->upstream, sizeof(c->upstream), "http://127.0.0.1:%u",
		 (unsigned)upstream_port);
	c->api_key = api_key;
	c->threads = 4;
	c->connect_timeout_ms = 1000;
	c->upstream_timeout_ms = 3000;
	c->backoff_base_ms = 1;
	c->backoff_max_ms = 5;
	c->log_level = GW_LOG_WARN;
}

double tu_gw_metric(const char *name)
{
	sw_buf b;
	double v = -1;
	const char *p;
	size_t n = strlen(name);

	sw_buf_init(&b, 0, NULL);
	if (gw_metrics_render(&b) == SW_OK && b.data) {
		for (p = b.data; (p = strstr(p, name)) != NULL; p += n) {
			if ((p == b.data || p[-1] == '\n') && p[n] == ' ') {
				v = strtod(p + n + 1, NULL);
				break;
			}
		}
	}
	sw_buf_free(&b);
	return v;
}
