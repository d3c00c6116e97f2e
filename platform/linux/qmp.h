/*
 * An asynchronous QMP client on the event loop: connects to a QEMU
 * monitor socket, does the capabilities handshake, sends commands with ids
 * and routes each reply to its callback; events go to one handler. Nothing
 * here blocks: a silent or dead QEMU only ever costs a timeout.
 */
#ifndef EMBER_QMP_H
#define EMBER_QMP_H

#include <jansson.h>

struct event_base;
struct qmp;

/* ready: err NULL once the handshake is done; else why it failed. */
typedef void (*qmp_ready_fn)(void *ctx, const char *err);
/* A command's reply: ret is "return" (borrowed) or NULL with err. */
typedef void (*qmp_reply_fn)(void *ctx, json_t *ret, const char *err);
typedef void (*qmp_event_fn)(void *ctx, const char *event, json_t *data);
/* The connection closed (QEMU exited or hung up). */
typedef void (*qmp_closed_fn)(void *ctx);

struct qmp *qmp_new(struct event_base *base, qmp_event_fn on_event,
    qmp_closed_fn on_closed, void *ctx);
/* Frees; pending callbacks are dropped silently. */
void qmp_free(struct qmp *q);
/* Connects to path (retrying ENOENT/ECONNREFUSED until timeout_ms) and
 * negotiates capabilities. */
int qmp_connect(struct qmp *q, const char *path, int timeout_ms,
    qmp_ready_fn ready, void *ctx);
/* Sends a command; cb runs once with its reply, or with an error when the
 * connection closes or timeout_ms passes. args may be NULL (stolen). */
int qmp_command(struct qmp *q, const char *cmd, json_t *args, int timeout_ms,
    qmp_reply_fn cb, void *ctx);

#endif
