/*
 * OCI images as ember uses them: reading the manifest digest and the
 * runtime-relevant config (Entrypoint, Cmd, Env, WorkingDir, User,
 * ExposedPorts, Labels) from a local OCI image layout that skopeo wrote, and
 * turning that config plus a VM's overrides into the workload the guest
 * runs. The workload travels to the guest on the kernel command line as
 * "ember.workload=<base64 of compact JSON>": {"args":[...], "env":[...],
 * "workdir":"/", "user":"..."}, which ember-agent decodes. Returns 0 or
 * -errno, with a reason in errbuf.
 */
#ifndef EMBER_OCI_H
#define EMBER_OCI_H

#include <stddef.h>
#include <jansson.h>

/* The most bytes of the encoded workload word (the kernel command line is
 * 2048 bytes on x86, and the rest of it needs room too). */
#define OCI_WORKLOAD_WORD_MAX 1400
/* The largest manifest or config blob read from a layout. */
#define OCI_BLOB_MAX (4 * 1024 * 1024)

/* Reads layout dir's manifest tagged tag (or its only one): *out is
 * {"digest": "sha256:...", "config": {...}} (new reference). */
int oci_layout_read(const char *dir, const char *tag, json_t **out, char *errbuf,
    size_t errlen);

/* The prefix emberd gives skopeo inspect's --format, so that the digest
 * line can be told from warnings on the same output. */
#define OCI_PROBE_FORMAT "ember-digest={{.Digest}}"
#define OCI_PROBE_MARK "ember-digest="
/* A "sha256:<64 hex>" digest and its terminating NUL. */
#define OCI_DIGEST_LEN (7 + 64 + 1)

/* The digest in the output of `skopeo inspect --format OCI_PROBE_FORMAT`
 * (stdout and stderr mixed): the last line that starts with OCI_PROBE_MARK
 * and holds a well-formed sha256 digest, copied into out. -ENOENT when
 * there is none. */
int oci_probe_digest(const char *output, char out[OCI_DIGEST_LEN]);

/* The workload for an image's config (the "config" member above) with a
 * VM's overrides (NULL or absent members keep the image's): args replace
 * Cmd, env entries K=V replace or add, workdir and user replace. *out is the
 * workload object (new reference). -EINVAL when there is nothing to run. */
int oci_workload(json_t *config, json_t *args, json_t *env, const char *workdir,
    const char *user, json_t **out, char *errbuf, size_t errlen);

/* "ember.workload=BASE64" for a workload, malloc'd; -E2BIG past
 * OCI_WORKLOAD_WORD_MAX. */
int oci_workload_word(json_t *workload, char **out);

#endif
