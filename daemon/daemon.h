/* The daemon's top-level object (being written). */
#ifndef EMBER_DAEMON_H
#define EMBER_DAEMON_H
struct ember_daemon;
#endif
