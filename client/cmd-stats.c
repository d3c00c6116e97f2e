/*
 * emberctl vm stats and emberctl metrics: vm.stats as a table like vm
 * list's (or its JSON), refreshed every second with --watch until
 * interrupted, and metrics.get's Prometheus text as it is.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emberctl.h"
#include "table.h"

#define WATCH_INTERVAL_MS 1000

/* bytes as "0", "512", "1.5K", "12.3M", "2.0G" (binary units). */
static const char *
human_bytes(const json_t *v, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	double b;
	int u = -1;

	if (!json_is_integer(v))
		return NULL;
	b = (double)json_integer_value(v);
	if (b < 1024) {
		snprintf(buf, len, "%.0f", b);
		return buf;
	}
	while (b >= 1024 && u < 5) {
		b /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f%c", b, units[u]);
	return buf;
}

/* v with decimals digits after the point and a unit suffix. */
static const char *
number(const json_t *v, int decimals, const char *suffix, char *buf, size_t len)
{
	if (!json_is_number(v))
		return NULL;
	snprintf(buf, len, "%.*f%s", decimals, json_number_value(v), suffix);
	return buf;
}

/* "3d4h", "2h5m", "4m10s", "12s". */
static const char *
duration(const json_t *v, char *buf, size_t len)
{
	long long s;

	if (!json_is_number(v))
		return NULL;
	s = (long long)json_number_value(v);
	if (s >= 86400)
		snprintf(buf, len, "%lldd%lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm%llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
	return buf;
}

static int
print_stats_table(json_t *vms)
{
	static const char *const headers[] = {
		"NAME", "STATUS", "UPTIME", "CPU", "RSS", "TO-GUEST", "FROM-GUEST",
		"CONNS", "DISK", "AGENT",
	};
	struct table *t = table_new(10, headers);
	json_t *s;
	size_t i;

	json_array_foreach(vms, i, s) {
		json_t *vsock = json_object_get(s, "vsock");
		char up[32], cpu[32], rss[32], tx[32], rx[32], conns[32], disk[32], agent[32];
		const char *row[10] = {
			json_string_value(json_object_get(s, "name")),
			json_string_value(json_object_get(s, "status")),
			duration(json_object_get(s, "uptime_s"), up, sizeof(up)),
			number(json_object_get(s, "cpu_seconds"), 2, "s", cpu, sizeof(cpu)),
			human_bytes(json_object_get(s, "rss_bytes"), rss, sizeof(rss)),
			human_bytes(json_object_get(vsock, "bytes_to_guest"), tx, sizeof(tx)),
			human_bytes(json_object_get(vsock, "bytes_from_guest"), rx, sizeof(rx)),
			number(json_object_get(vsock, "connections"), 0, "", conns, sizeof(conns)),
			human_bytes(json_object_get(s, "disk_allocated_bytes"), disk, sizeof(disk)),
			number(json_object_get(s, "agent_latency_ms"), 1, "ms", agent, sizeof(agent)),
		};

		if (t != NULL && table_add_row(t, row) < 0) {
			table_free(t);
			t = NULL;
		}
	}
	return ctl_print_table(t);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0)
		;
}

int
cmd_vm_stats(struct ctl *ctl, struct verb_args *a)
{
	bool watch = OPTARG(a, OPT_WATCH) != NULL;
	bool tty = isatty(STDOUT_FILENO);
	json_t *result, *vms;
	int r;

	for (;;) {
		json_t *params = a->argc > 0 ? json_pack("{s:s}", "name", a->argv[0]) : NULL;

		r = ctl_query(ctl, "vm.stats", params, &result);
		if (r != EXIT_OK)
			return r;
		if (result != NULL) {
			if ((vms = ctl_reply_member(result, "vm.stats", "vms", JSON_ARRAY)) == NULL) {
				json_decref(result);
				return EXIT_ERROR;
			}
			if (watch && tty)
				fputs("\033[H\033[2J", stdout);	/* home, clear */
			r = print_stats_table(vms);
			json_decref(result);
			if (r != EXIT_OK)
				return r;
		}
		if (!watch)
			return EXIT_OK;
		if (fflush(stdout) == EOF)
			return EXIT_ERROR;	/* nobody reads us any more */
		sleep_ms(WATCH_INTERVAL_MS);
	}
}

int
cmd_metrics(struct ctl *ctl, struct verb_args *a)
{
	json_t *result, *text;
	int r = ctl_query(ctl, "metrics.get", NULL, &result);

	if (r != EXIT_OK || result == NULL)
		return r;
	text = json_object_get(result, "text");
	if (!json_is_string(text)) {
		ctl_warnx("malformed reply from emberd to metrics.get: no \"text\" string");
		json_decref(result);
		return EXIT_ERROR;
	}
	fwrite(json_string_value(text), 1, json_string_length(text), stdout);
	json_decref(result);
	return EXIT_OK;
}
