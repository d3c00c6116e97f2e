/*
 * The verbs outside `vm`: `vsock allocations`, `daemon info`, the `rpc`
 * pass-through and `version`. Like the vm verbs, each makes one call and
 * prints the raw result with --json or a short human form without.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emberctl.h"
#include "table.h"

struct cid_row {
	unsigned long long cid;
	const char *owner;
};

static int
cid_row_cmp(const void *pa, const void *pb)
{
	const struct cid_row *a = pa, *b = pb;

	return (a->cid > b->cid) - (a->cid < b->cid);
}

int
cmd_vsock_allocations(struct ctl *ctl, struct verb_args *a)
{
	static const char *const headers[] = { "CID", "OWNER" };
	json_t *result, *allocs, *owner;
	struct cid_row *rows;
	struct table *t;
	const char *key;
	size_t n = 0;
	int r = ctl_query(ctl, "vsock.allocations", NULL, &result);

	if (r != EXIT_OK || result == NULL)
		return r;
	allocs = ctl_reply_member(result, "vsock.allocations", "allocations", JSON_OBJECT);
	if (allocs == NULL) {
		json_decref(result);
		return EXIT_ERROR;
	}
	/* Keys are decimal CIDs; show them in numeric order. */
	rows = calloc(json_object_size(allocs) + 1, sizeof(*rows));
	t = table_new(2, headers);
	if (rows == NULL || t == NULL) {
		free(rows);
		table_free(t);
		json_decref(result);
		ctl_warnx("out of memory");
		return EXIT_ERROR;
	}
	json_object_foreach(allocs, key, owner) {
		rows[n].cid = strtoull(key, NULL, 10);
		rows[n].owner = json_is_string(owner) ? json_string_value(owner) : "?";
		n++;
	}
	qsort(rows, n, sizeof(*rows), cid_row_cmp);
	for (size_t i = 0; i < n; i++) {
		char cid[32];
		const char *row[2] = { cid, rows[i].owner };

		snprintf(cid, sizeof(cid), "%llu", rows[i].cid);
		if (table_add_row(t, row) < 0) {
			r = EXIT_ERROR;
			ctl_warnx("out of memory");
			break;
		}
	}
	if (r == EXIT_OK)
		table_print(t, stdout);
	table_free(t);
	free(rows);
	json_decref(result);
	return r;
}

static const char *
str_or(const json_t *obj, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL ? s : dflt;
}

static void
print_int_line(const char *label, const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		printf("%-13s%" JSON_INTEGER_FORMAT "\n", label,
		    json_integer_value(v));
	else
		printf("%-13s-\n", label);
}

int
cmd_daemon_info(struct ctl *ctl, struct verb_args *a)
{
	json_t *info, *backends, *be;
	size_t i;
	int width = 0;
	int r = ctl_query(ctl, "daemon.info", NULL, &info);

	if (r != EXIT_OK || info == NULL)
		return r;
	printf("emberd %s (api %" JSON_INTEGER_FORMAT "), pid %"
	    JSON_INTEGER_FORMAT "\n", str_or(info, "version", "?"),
	    json_integer_value(json_object_get(info, "api_version")),
	    json_integer_value(json_object_get(info, "pid")));
	printf("%-13s%s\n", "socket:", str_or(info, "socket", "-"));
	printf("%-13s%s\n", "state dir:", str_or(info, "state_dir", "-"));
	print_int_line("vms:", info, "vms");
	print_int_line("cids in use:", info, "cids_in_use");
	printf("backends:\n");
	backends = json_object_get(info, "backends");
	json_array_foreach(backends, i, be) {
		int w = (int)strlen(str_or(be, "name", "?"));

		if (w > width)
			width = w;
	}
	json_array_foreach(backends, i, be) {
		const char *name = str_or(be, "name", "?");

		if (json_is_true(json_object_get(be, "available"))) {
			printf("  %-*s  available    %s", width, name,
			    str_or(be, "version", "version unknown"));
			if (json_object_get(be, "binary") != NULL)
				printf(" (%s)", str_or(be, "binary", ""));
			printf("\n");
		} else {
			printf("  %-*s  unavailable  %s\n", width, name,
			    str_or(be, "reason", "no reason given"));
		}
	}
	if (json_array_size(backends) == 0)
		printf("  (none)\n");
	json_decref(info);
	return EXIT_OK;
}

int
cmd_rpc(struct ctl *ctl, struct verb_args *a)
{
	json_t *params = NULL, *result;
	int r;

	if (a->argc > 1) {
		json_error_t jerr;

		params = json_loads(a->argv[1], JSON_DECODE_ANY |
		    JSON_REJECT_DUPLICATES, &jerr);
		if (params == NULL)
			return ctl_usage_error(ctl, "invalid JSON params: %s "
			    "(line %d, column %d)", jerr.text, jerr.line,
			    jerr.column);
		if (!json_is_object(params) && !json_is_array(params) &&
		    !json_is_null(params)) {
			json_decref(params);
			return ctl_usage_error(ctl, "JSON params must be an "
			    "object or an array");
		}
		if (json_is_null(params)) {
			json_decref(params);
			params = NULL;
		}
	}
	r = ctl_call(ctl, a->argv[0], params, &result);
	if (r != EXIT_OK)
		return r;
	ctl_print_json(result);
	json_decref(result);
	return EXIT_OK;
}

/* daemon.upgrade: emberd re-executes its binary, keeping VMs' vsock. */
int
cmd_daemon_upgrade(struct ctl *ctl, struct verb_args *a)
{
	json_t *res;
	int r = ctl_call(ctl, "daemon.upgrade", NULL, &res);

	if (r != EXIT_OK)
		return r;
	if (ctl->json)
		ctl_print_json(res);
	else
		printf("emberd (pid %" JSON_INTEGER_FORMAT ") is re-executing its binary\n",
		    json_integer_value(json_object_get(res, "pid")));
	json_decref(res);
	return EXIT_OK;
}

int
cmd_version(struct ctl *ctl, struct verb_args *a)
{
	json_t *info;
	int r;

	if (!ctl->json)
		printf("emberctl %s\n", EMBER_VERSION);
	fflush(stdout);
	r = ctl_call(ctl, "daemon.info", NULL, &info);
	if (r != EXIT_OK)
		return r;
	if (ctl->json) {
		json_t *out = json_pack("{s:s, s:O?, s:O?}", "emberctl",
		    EMBER_VERSION, "emberd", json_object_get(info, "version"),
		    "api_version", json_object_get(info, "api_version"));

		ctl_print_json(out);
		json_decref(out);
	} else {
		printf("emberd %s (api %" JSON_INTEGER_FORMAT ")\n",
		    str_or(info, "version", "?"),
		    json_integer_value(json_object_get(info, "api_version")));
	}
	json_decref(info);
	return EXIT_OK;
}
