/*
 * The `image` verbs: import, list, inspect and delete images in emberd's
 * store. emberd runs in another directory, so every file argument is made
 * absolute here (realpath when the file exists, else joined to the current
 * directory so that emberd can say what is missing). Like the vm verbs,
 * each makes one call and prints the raw result with --json.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emberctl.h"
#include "size.h"
#include "table.h"

#define IMAGE_KV_WIDTH 13	/* where inspect's values start */

static const char *
doc_str(const json_t *doc, const char *key)
{
	return json_string_value(json_object_get(doc, key));
}

/* The last path component, "-" when absent. */
static const char *
base_name(const char *path)
{
	const char *slash;

	if (path == NULL)
		return "-";
	slash = strrchr(path, '/');
	return slash != NULL && slash[1] != '\0' ? slash + 1 : path;
}

/* path as an absolute path in buf; EXIT_OK or a printed error. */
static int
absolute_path(const char *flag, const char *path, char *buf, size_t len)
{
	char cwd[PATH_MAX];

	if (realpath(path, buf) != NULL)
		return EXIT_OK;
	if (path[0] == '/') {
		snprintf(buf, len, "%s", path);
		return EXIT_OK;
	}
	if (getcwd(cwd, sizeof(cwd)) == NULL) {
		ctl_warnx("cannot resolve %s '%s': %s", flag, path, strerror(errno));
		return EXIT_ERROR;
	}
	if ((size_t)snprintf(buf, len, "%s/%s", cwd, path) >= len) {
		ctl_warnx("%s '%s': the absolute path is too long", flag, path);
		return EXIT_ERROR;
	}
	return EXIT_OK;
}

/* An OCI source with its path (up to the first ':' after the transport, as
 * skopeo splits it) made absolute; docker:// is passed as given. */
static int
oci_source(const char *src, char *buf, size_t len)
{
	static const char *const transports[] = { "oci:", "oci-archive:", "docker-archive:" };
	char path[PATH_MAX], abs[PATH_MAX];

	if (strncmp(src, "docker://", 9) == 0) {
		snprintf(buf, len, "%s", src);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
		size_t n = strlen(transports[i]);
		const char *rest = src + n, *colon;
		int r;

		if (strncmp(src, transports[i], n) != 0)
			continue;
		colon = strchr(rest, ':');
		snprintf(path, sizeof(path), "%.*s", (int)(colon ? colon - rest : (long)strlen(rest)),
		    rest);
		if ((r = absolute_path("--oci", path, abs, sizeof(abs))) != EXIT_OK)
			return r;
		if ((size_t)snprintf(buf, len, "%s%s%s", transports[i], abs, colon ? colon : "") >=
		    len) {
			ctl_warnx("--oci '%s': too long", src);
			return EXIT_ERROR;
		}
		return EXIT_OK;
	}
	ctl_warnx("--oci '%s': expected oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE "
	    "or docker://REF", src);
	return EXIT_USAGE;
}

int
cmd_image_import(struct ctl *ctl, struct verb_args *a)
{
	static const struct {
		enum opt_id opt;
		const char *flag, *key;
	} files[] = {
		{ OPT_KERNEL, "--kernel", "kernel" },
		{ OPT_VMLINUX, "--vmlinux", "vmlinux" },
		{ OPT_INITRD, "--initrd", "initrd" },
		{ OPT_ROOTFS, "--rootfs", "rootfs" },
		{ OPT_ROOTFS_DIR, "--rootfs-dir", "rootfs_dir" },
	};
	const char *name = a->argv[0];
	const char *size = OPTARG(a, OPT_ROOTFS_SIZE);
	json_t *params, *doc;
	int r;

	const char *oci = OPTARG(a, OPT_OCI);

	if (OPTARG(a, OPT_KERNEL) == NULL && oci == NULL)
		return ctl_usage_error(ctl, "--kernel or --oci is required");
	if (oci != NULL && (OPTARG(a, OPT_ROOTFS) != NULL || OPTARG(a, OPT_ROOTFS_DIR) != NULL))
		return ctl_usage_error(ctl, "--oci and --rootfs/--rootfs-dir conflict");
	if (OPTARG(a, OPT_ROOTFS) != NULL && OPTARG(a, OPT_ROOTFS_DIR) != NULL)
		return ctl_usage_error(ctl, "--rootfs and --rootfs-dir conflict");
	if (size != NULL && OPTARG(a, OPT_ROOTFS_DIR) == NULL)
		return ctl_usage_error(ctl, "--rootfs-size needs --rootfs-dir");
	if (OPTARG(a, OPT_NO_TLS_VERIFY) != NULL && oci == NULL)
		return ctl_usage_error(ctl, "--no-tls-verify goes with --oci docker://...");
	params = json_pack("{s:s}", "name", name);
	if (params == NULL) {
		ctl_warnx("out of memory");
		return EXIT_ERROR;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		const char *v = OPTARG(a, files[i].opt);
		char abs[PATH_MAX];

		if (v == NULL)
			continue;
		if ((r = absolute_path(files[i].flag, v, abs, sizeof(abs))) != EXIT_OK)
			goto fail;
		json_object_set_new(params, files[i].key, json_string(abs));
	}
	if (size != NULL) {
		uint64_t mib;

		r = size_parse_mib(size, &mib);
		if (r < 0 || mib == 0 || mib > 16 * 1024 * 1024) {
			r = ctl_usage_error(ctl, "invalid --rootfs-size '%s': expected "
			    "a whole number of MiB with a unit, 1M to 16T, e.g. 1G",
			    size);
			goto fail;
		}
		json_object_set_new(params, "rootfs_size_mib",
		    json_integer((json_int_t)mib));
	}
	if (OPTARG(a, OPT_BOOT_ARGS) != NULL)
		json_object_set_new(params, "boot_args",
		    json_string(OPTARG(a, OPT_BOOT_ARGS)));
	if (oci != NULL) {
		char src[PATH_MAX + 64];
		if ((r = oci_source(oci, src, sizeof(src))) != EXIT_OK)
			goto fail;
		json_object_set_new(params, "oci", json_string(src));
		if (OPTARG(a, OPT_NO_TLS_VERIFY) != NULL)
			json_object_set_new(params, "tls_verify", json_false());
	}
	struct ctl_progress *progress = ctl_progress_start(ctl, NULL, name);
	r = ctl_call(ctl, "image.import", params, &doc);
	ctl_progress_stop(progress);
	if (r != EXIT_OK)
		return r;
	if (ctl->json)
		ctl_print_json(doc);
	else if (json_is_true(json_object_get(doc, "unchanged")))
		printf("%s: already imported (same digest %s), unchanged\n", name,
		    doc_str(json_object_get(doc, "oci"), "digest"));
	else if (json_object_get(doc, "oci") != NULL)
		printf("%s: imported %s (%.1f MiB on disk, %.1f s)\n", name,
		    doc_str(json_object_get(doc, "oci"), "digest"),
		    (double)json_integer_value(json_object_get(doc, "disk_bytes")) / (1024 * 1024),
		    json_real_value(json_object_get(doc, "import_seconds")));
	else
		printf("%s: imported\n", name);
	json_decref(doc);
	return EXIT_OK;
fail:
	json_decref(params);
	return r;
}

int
cmd_image_list(struct ctl *ctl, struct verb_args *a)
{
	static const char *const headers[] = { "NAME", "KERNEL", "INITRD", "ROOTFS" };
	json_t *result, *images, *doc;
	struct table *t;
	size_t i;
	int r = ctl_query(ctl, "image.list", NULL, &result);

	if (r != EXIT_OK || result == NULL)
		return r;
	if ((images = ctl_reply_member(result, "image.list", "images", JSON_ARRAY)) == NULL) {
		json_decref(result);
		return EXIT_ERROR;
	}
	t = table_new(4, headers);
	json_array_foreach(images, i, doc) {
		/* An image whose image.json is unreadable lists with its error. */
		const char *error = doc_str(doc, "error");
		const char *row[4] = {
			doc_str(doc, "name"),
			error != NULL ? "(unreadable)" : base_name(doc_str(doc, "kernel")),
			base_name(doc_str(doc, "initrd")),
			base_name(doc_str(doc, "rootfs")),
		};

		if (t != NULL && table_add_row(t, row) < 0) {
			table_free(t);
			t = NULL;
		}
	}
	json_decref(result);
	return ctl_print_table(t);
}

int
cmd_image_inspect(struct ctl *ctl, struct verb_args *a)
{
	static const struct { const char *label, *key; } strings[] = {
		{ "name", "name" }, { "kernel", "kernel" }, { "vmlinux", "vmlinux" },
		{ "initrd", "initrd" }, { "rootfs", "rootfs" },
		{ "boot args", "boot_args" }, { "created at", "created_at" },
	};
	json_t *doc, *owner;
	char buf[32];
	int r = ctl_query(ctl, "image.inspect",
	    json_pack("{s:s}", "name", a->argv[0]), &doc);

	if (r != EXIT_OK || doc == NULL)
		return r;
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		ctl_kv(strings[i].label, doc_str(doc, strings[i].key), IMAGE_KV_WIDTH);
	owner = json_object_get(doc, "owner_uid");
	if (json_is_integer(owner))
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
		    json_integer_value(owner));
	ctl_kv("owner uid", json_is_integer(owner) ? buf : NULL, IMAGE_KV_WIDTH);
	json_t *oci = json_object_get(doc, "oci");
	if (oci != NULL) {
		/* An OCI image: where it came from and what it runs. */
		json_t *cfg = json_object_get(oci, "config");
		static const char *const keys[] = { "Entrypoint", "Cmd", "Env" };
		ctl_kv("oci source", doc_str(oci, "source"), IMAGE_KV_WIDTH);
		ctl_kv("oci digest", doc_str(oci, "digest"), IMAGE_KV_WIDTH);
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			char *v = json_dumps(json_object_get(cfg, keys[i]), JSON_COMPACT |
			    JSON_ENCODE_ANY);
			char label[16];
			snprintf(label, sizeof(label), "%c%s", keys[i][0] + 32, keys[i] + 1);
			ctl_kv(label, v != NULL && strcmp(v, "null") != 0 ? v : NULL,
			    IMAGE_KV_WIDTH);
			free(v);
		}
		ctl_kv("workdir", doc_str(cfg, "WorkingDir"), IMAGE_KV_WIDTH);
		ctl_kv("user", doc_str(cfg, "User"), IMAGE_KV_WIDTH);
	}
	json_decref(doc);
	return EXIT_OK;
}

int
cmd_image_delete(struct ctl *ctl, struct verb_args *a)
{
	json_t *params = json_pack("{s:s}", "name", a->argv[0]);
	json_t *doc;
	int r;

	if (OPTARG(a, OPT_FORCE) != NULL)
		json_object_set_new(params, "force", json_true());
	r = ctl_call(ctl, "image.delete", params, &doc);
	if (r != EXIT_OK)
		return r;
	if (ctl->json)
		ctl_print_json(doc);
	else
		printf("%s: deleted\n", a->argv[0]);
	json_decref(doc);
	return EXIT_OK;
}
