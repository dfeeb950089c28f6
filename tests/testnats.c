/* testnats.c - real nats-server clusters for the queue's suites: nodes
 * started as child processes on free loopback ports, each with its own
 * JetStream directory and log under the caller's directory, killed with
 * SIGKILL or stopped with SIGTERM and started again on the same ports and
 * data, as an operator's would be. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "testutil.h"

#define NODES_MAX 5

struct tu_nats {
	int n;
	char dir[256];
	uint16_t port[NODES_MAX], cport[NODES_MAX];
	pid_t pid[NODES_MAX];
	int runs[NODES_MAX];
	char urls[NODES_MAX * 32];
	char url[NODES_MAX][32];
};

/* A port nobody listens on now (bound to 0 and released). */
static uint16_t free_port(void)
{
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	uint16_t port = 0;

	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int write_conf(tu_nats *c, int i)
{
	char path[512];
	FILE *f;
	int k;

	snprintf(path, sizeof(path), "%s/n%d.conf", c->dir, i + 1);
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "server_name: n%d\nlisten: 127.0.0.1:%u\n"
		"jetstream { store_dir: \"%s/d%d\" }\n",
		i + 1, c->port[i], c->dir, i + 1);
	if (c->n > 1) {
		fprintf(f, "cluster {\n  name: swtest\n  listen: 127.0.0.1:%u\n  routes: [",
			c->cport[i]);
		for (k = 0; k < c->n; k++)
			fprintf(f, "%s nats-route://127.0.0.1:%u", k ? "," : "",
				c->cport[k]);
		fprintf(f, " ]\n}\n");
	}
	return fclose(f) == 0 ? 0 : -1;
}

int tu_nats_restart(tu_nats *c, int i)
{
	char conf[512], logp[512];
	pid_t pid, parent;
	int fd;

	if (i < 0 || i >= c->n || c->pid[i] > 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/n%d.conf", c->dir, i + 1);
	snprintf(logp, sizeof(logp), "%s/n%d.log", c->dir, i + 1);
	fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	parent = getpid();
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		tu_child_dies_with_parent(parent);
		dup2(devnull, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("nats-server", "nats-server", "-c", conf, (char *)NULL);
		_exit(127);
	}
	close(fd);
	if (pid < 0)
		return -1;
	c->pid[i] = pid;
	c->runs[i]++;
	return 0;
}

tu_nats *tu_nats_start(int n, const char *dir)
{
	tu_nats *c;
	int i;
	size_t off = 0;

	if (n < 1 || n > NODES_MAX)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->n = n;
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	for (i = 0; i < n; i++) {
		c->port[i] = free_port();
		c->cport[i] = free_port();
		if (c->port[i] == 0 || c->cport[i] == 0 ||
		    c->port[i] == c->cport[i]) {
			free(c);
			return NULL;
		}
		snprintf(c->url[i], sizeof(c->url[i]), "nats://127.0.0.1:%u",
			 c->port[i]);
		off += (size_t)snprintf(c->urls + off, sizeof(c->urls) - off,
					"%s%s", i ? "," : "", c->url[i]);
	}
	for (i = 0; i < n; i++) {
		if (write_conf(c, i) != 0 || tu_nats_restart(c, i) != 0) {
			tu_nats_stop(c);
			return NULL;
		}
	}
	if (tu_nats_wait_ready(c, 30) != 0) {
		fprintf(stderr, "tu_nats_start: JetStream did not become ready (logs in %s)\n",
			dir);
		tu_nats_stop(c);
		return NULL;
	}
	return c;
}

const char *tu_nats_urls(const tu_nats *c)
{
	return c->urls;
}

const char *tu_nats_url(const tu_nats *c, int i)
{
	return c->url[i];
}

int tu_nats_nodes(const tu_nats *c)
{
	return c->n;
}

bool tu_nats_running(const tu_nats *c, int i)
{
	return c->pid[i] > 0;
}

void tu_nats_signal(tu_nats *c, int i, int sig)
{
	if (i < 0 || i >= c->n || c->pid[i] <= 0)
		return;
	kill(c->pid[i], sig);
	waitpid(c->pid[i], NULL, 0);
	c->pid[i] = 0;
}

void tu_nats_signal_all(tu_nats *c, int sig)
{
	int i;

	for (i = 0; i < c->n; i++)
		if (c->pid[i] > 0)
			kill(c->pid[i], sig);
	for (i = 0; i < c->n; i++)
		if (c->pid[i] > 0) {
			waitpid(c->pid[i], NULL, 0);
			c->pid[i] = 0;
		}
}

void tu_nats_kill(tu_nats *c, int i)
{
	tu_nats_signal(c, i, SIGKILL);
}

/* A connection to the running nodes (no reconnects). NULL on failure. */
static natsConnection *connect_any(const tu_nats *c, int64_t timeout_ms)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	const char *servers[NODES_MAX];
	int i, n = 0;

	for (i = 0; i < c->n; i++)
		if (c->pid[i] > 0)
			servers[n++] = c->url[i];
	if (n == 0 || natsOptions_Create(&o) != NATS_OK)
		return NULL;
	natsOptions_SetServers(o, servers, n);
	natsOptions_SetTimeout(o, timeout_ms);
	natsOptions_SetMaxReconnect(o, 0);
	if (natsConnection_Connect(&nc, o) != NATS_OK)
		nc = NULL;
	natsOptions_Destroy(o);
	return nc;
}

/* JetStream answers, and (every node running) places a replicated
 * stream: a probe stream made and removed. A fresh cluster elects its
 * leader before it knows all its peers ("no suitable peers"). */
static bool js_ready(tu_nats *c, jsCtx *js)
{
	jsAccountInfo *ai = NULL;
	jsStreamInfo *si = NULL;
	jsStreamConfig sc;
	const char *subj[1] = { "tu_probe.x" };
	int running = 0, i;
	bool ok;

	ok = js_GetAccountInfo(&ai, js, NULL, NULL) == NATS_OK;
	jsAccountInfo_Destroy(ai);
	for (i = 0; i < c->n; i++)
		running += c->pid[i] > 0;
	if (!ok || running < c->n || c->n < 3)
		return ok;
	jsStreamConfig_Init(&sc);
	sc.Name = "TU_PROBE";
	sc.Subjects = subj;
	sc.SubjectsLen = 1;
	sc.Storage = js_MemoryStorage;
	sc.Replicas = c->n;
	ok = js_AddStream(&si, js, &sc, NULL, NULL) == NATS_OK;
	jsStreamInfo_Destroy(si);
	if (ok)
		js_DeleteStream(js, "TU_PROBE", NULL, NULL);
	return ok;
}

int tu_nats_wait_ready(tu_nats *c, double wait_s)
{
	double end = tu_mono() + wait_s;

	while (tu_mono() < end) {
		natsConnection *nc = connect_any(c, 500);
		jsCtx *js = NULL;
		jsOptions jo;
		bool ok = false;

		if (nc != NULL) {
			jsOptions_Init(&jo);
			jo.Wait = 2000;
			if (natsConnection_JetStream(&js, nc, &jo) == NATS_OK &&
			    js_ready(c, js))
				ok = true;
			jsCtx_Destroy(js);
			natsConnection_Destroy(nc);
		}
		if (ok)
			return 0;
		tu_sleep_ms(200);
	}
	return -1;
}

int tu_nats_leader(tu_nats *c, const char *stream, double wait_s)
{
	double end = tu_mono() + wait_s;

	while (tu_mono() < end) {
		natsConnection *nc = connect_any(c, 500);
		jsCtx *js = NULL;
		jsStreamInfo *si = NULL;
		jsOptions jo;
		int found = -1, i;

		if (nc != NULL) {
			jsOptions_Init(&jo);
			jo.Wait = 3000; /* a loaded cluster answers slowly */
			if (natsConnection_JetStream(&js, nc, &jo) == NATS_OK &&
			    js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK &&
			    si->Cluster != NULL && si->Cluster->Leader != NULL) {
				for (i = 0; i < c->n; i++) {
					char name[16];

					snprintf(name, sizeof(name), "n%d", i + 1);
					if (strcmp(si->Cluster->Leader, name) == 0)
						found = i;
				}
			}
			jsStreamInfo_Destroy(si);
			jsCtx_Destroy(js);
			natsConnection_Destroy(nc);
		}
		if (found >= 0 && c->pid[found] > 0)
			return found;
		tu_sleep_ms(200);
	}
	return -1;
}

int tu_nats_exec(tu_nats *c, int (*fn)(void *js, void *ud), void *ud)
{
	natsConnection *nc = connect_any(c, 2000);
	jsCtx *js = NULL;
	jsOptions jo;
	int rc = -1;

	if (nc == NULL)
		return -1;
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	if (natsConnection_JetStream(&js, nc, &jo) == NATS_OK)
		rc = fn(js, ud);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return rc;
}

void tu_nats_stop(tu_nats *c)
{
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < c->n; i++)
		if (c->pid[i] > 0)
			kill(c->pid[i], SIGTERM);
	for (i = 0; i < c->n; i++) {
		if (c->pid[i] > 0) {
			double end = tu_mono() + 10;
			int st;

			while (waitpid(c->pid[i], &st, WNOHANG) == 0) {
				if (tu_mono() > end) {
					kill(c->pid[i], SIGKILL);
					waitpid(c->pid[i], &st, 0);
					break;
				}
				tu_sleep_ms(20);
			}
		}
		c->pid[i] = 0;
	}
	free(c);
}
