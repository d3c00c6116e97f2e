/*
 * OCI image layouts and workloads (see oci.h). The layout is one emberd
 * just wrote with skopeo into a root-only staging directory; its contents
 * still come from an untrusted image, so every member is type-checked and
 * every blob read is bounded.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "fsutil.h"
#include "oci.h"

static int __attribute__((format(printf, 4, 5)))
fail(char *errbuf, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (errbuf != NULL) {
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}

/* "sha256:<64 hex>" */
static int
digest_valid(const char *d)
{
	if (d == NULL || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
		return 0;
	for (const char *p = d + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

static int
read_blob(const char *dir, const char *digest, json_t **out, char *errbuf, size_t errlen)
{
	char path[PATH_MAX], *buf = NULL;
	json_error_t jerr;
	size_t len;
	int r;

	if (!digest_valid(digest))
		return fail(errbuf, errlen, -EINVAL, "unsupported digest \"%.80s\"",
		    digest ? digest : "");
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, digest + 7);
	if ((r = read_file(path, OCI_BLOB_MAX, &buf, &len)) < 0)
		return fail(errbuf, errlen, r, "cannot read blob %s", digest);
	*out = json_loadb(buf, len, 0, &jerr);
	free(buf);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return fail(errbuf, errlen, -EBADMSG, "blob %s is not a JSON object", digest);
	}
	return 0;
}

static int
string_array(json_t *v)
{
	size_t i;
	json_t *e;

	if (!json_is_array(v))
		return 0;
	json_array_foreach(v, i, e)
		if (!json_is_string(e))
			return 0;
	return 1;
}

/* The members of an image config ember keeps, type-checked. */
static json_t *
config_keep(json_t *cfg)
{
	static const char *const arrays[] = { "Entrypoint", "Cmd", "Env" };
	static const char *const strings[] = { "WorkingDir", "User" };
	static const char *const objects[] = { "ExposedPorts", "Labels" };
	json_t *out = json_object();

	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
		if (string_array(json_object_get(cfg, arrays[i])))
			json_object_set(out, arrays[i], json_object_get(cfg, arrays[i]));
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (json_is_string(json_object_get(cfg, strings[i])))
			json_object_set(out, strings[i], json_object_get(cfg, strings[i]));
	for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++)
		if (json_is_object(json_object_get(cfg, objects[i])))
			json_object_set(out, objects[i], json_object_get(cfg, objects[i]));
	return out;
}

int
oci_layout_read(const char *dir, const char *tag, json_t **out, char *errbuf, size_t errlen)
{
	char path[PATH_MAX], jbuf[256];
	json_t *index = NULL, *manifests, *m, *chosen = NULL, *manifest = NULL, *config = NULL;
	const char *digest, *cdigest;
	size_t i;
	int r;

	*out = NULL;
	snprintf(path, sizeof(path), "%s/index.json", dir);
	if ((r = read_json_file(path, &index, jbuf, sizeof(jbuf))) < 0)
		return fail(errbuf, errlen, r, "cannot read the layout's index.json%s", "");
	manifests = json_object_get(index, "manifests");
	json_array_foreach(manifests, i, m) {
		const char *ref = json_string_value(json_object_get(
		    json_object_get(m, "annotations"), "org.opencontainers.image.ref.name"));
		if (json_array_size(manifests) == 1 || (ref != NULL && tag != NULL &&
		    strcmp(ref, tag) == 0))
			chosen = m;
	}
	if (chosen == NULL) {
		json_decref(index);
		return fail(errbuf, errlen, -ENOENT, "the layout has no manifest%s", "");
	}
	digest = json_string_value(json_object_get(chosen, "digest"));
	if ((r = read_blob(dir, digest, &manifest, errbuf, errlen)) < 0)
		goto out;
	cdigest = json_string_value(json_object_get(json_object_get(manifest, "config"), "digest"));
	if ((r = read_blob(dir, cdigest, &config, errbuf, errlen)) < 0)
		goto out;
	*out = json_pack("{s:s, s:o}", "digest", digest, "config",
	    config_keep(json_object_get(config, "config")));
	r = *out != NULL ? 0 : -ENOMEM;
out:
	json_decref(config);
	json_decref(manifest);
	json_decref(index);
	return r;
}

int
oci_probe_digest(const char *output, char out[OCI_DIGEST_LEN])
{
	const size_t mark = strlen(OCI_PROBE_MARK);
	char cand[OCI_DIGEST_LEN];
	int found = -ENOENT;

	for (const char *line = output; line != NULL && *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len == mark + OCI_DIGEST_LEN - 1 && strncmp(line, OCI_PROBE_MARK, mark) == 0) {
			memcpy(cand, line + mark, OCI_DIGEST_LEN - 1);
			cand[OCI_DIGEST_LEN - 1] = '\0';
			if (digest_valid(cand)) {
				memcpy(out, cand, OCI_DIGEST_LEN);
				found = 0;
			}
		}
		line = end != NULL ? end + 1 : NULL;
	}
	return found;
}

/* env with K=V set (an entry for K replaced, else appended). */
static void
env_set(json_t *env, const char *kv)
{
	const char *eq = strchr(kv, '=');
	size_t klen = eq != NULL ? (size_t)(eq - kv) : strlen(kv);
	size_t i;
	json_t *e;

	json_array_foreach(env, i, e) {
		const char *s = json_string_value(e);
		if (strncmp(s, kv, klen) == 0 && (s[klen] == '=' || s[klen] == '\0')) {
			json_array_set_new(env, i, json_string(kv));
			return;
		}
	}
	json_array_append_new(env, json_string(kv));
}

int
oci_workload(json_t *config, json_t *args, json_t *env, const char *workdir, const char *user,
    json_t **out, char *errbuf, size_t errlen)
{
	json_t *entry = json_object_get(config, "Entrypoint");
	json_t *cmd = args != NULL && json_array_size(args) > 0 ? args :
	    json_object_get(config, "Cmd");
	json_t *argv = json_array(), *envv = json_array(), *e;
	const char *wd = workdir ? workdir : json_string_value(json_object_get(config, "WorkingDir"));
	const char *u = user ? user : json_string_value(json_object_get(config, "User"));
	size_t i;

	*out = NULL;
	if (string_array(entry))
		json_array_extend(argv, entry);
	if (string_array(cmd))
		json_array_extend(argv, cmd);
	if (json_array_size(argv) == 0) {
		json_decref(argv);
		json_decref(envv);
		return fail(errbuf, errlen, -EINVAL,
		    "the image has no Entrypoint or Cmd%s: give a command after --", "");
	}
	e = json_object_get(config, "Env");
	if (string_array(e))
		json_array_extend(envv, e);
	if (string_array(env))
		json_array_foreach(env, i, e)
			env_set(envv, json_string_value(e));
	*out = json_pack("{s:o, s:o, s:s, s:s}", "args", argv, "env", envv,
	    "workdir", wd != NULL && wd[0] != '\0' ? wd : "/", "user", u != NULL ? u : "");
	return *out != NULL ? 0 : -ENOMEM;
}

int
oci_workload_word(json_t *workload, char **out)
{
	static const char prefix[] = "ember.workload=";
	char *compact = json_dumps(workload, JSON_COMPACT), *b64;
	size_t len;

	*out = NULL;
	if (compact == NULL)
		return -ENOMEM;
	b64 = base64_encode(compact, strlen(compact), &len);
	free(compact);
	if (b64 == NULL)
		return -ENOMEM;
	if (len + sizeof(prefix) > OCI_WORKLOAD_WORD_MAX) {
		free(b64);
		return -E2BIG;
	}
	*out = malloc(len + sizeof(prefix));
	if (*out != NULL)
		snprintf(*out, len + sizeof(prefix), "%s%s", prefix, b64);
	free(b64);
	return *out != NULL ? 0 : -ENOMEM;
}
