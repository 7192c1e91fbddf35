/* Upgrade: hands the listening sockets, the segment and the files of a running master to a new binary (SIGUSR2). */
#ifndef SFU_UPGRADE_H
#define SFU_UPGRADE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The old master starts the new binary with fork() and execv() of the path
 * it was itself started from (as /proc/self/exe named it at start, so a
 * package that replaced the file on disk is what runs) and the same argv.
 * The descriptors below cross the exec with FD_CLOEXEC cleared; UPGRADE_ENV
 * names them, as nginx's NGINX variable names its sockets:
 *   SFU_GATEWAY_UPGRADE="version=1 master=<old pid> ready=<fd> shm=<fd>
 *                        lock=<fd> pid=<fd|-1> keeper=<fd|-1> listen=<fd>,<fd>,..."
 * ready: the write end of a pipe; the new master writes one byte on it once
 *        its workers accept connections, and the old master then drains.
 * shm:   the segment (shm.h); lock: the instance lock (instance.h), so the
 *        lock is never free during the handover; pid: the pid file, which
 *        the new master rewrites in place (after --user nobody could create a
 *        file in /run); keeper: the keeper's pipe (keeper.h), so that the
 *        files are still removed when the new master stops.
 * listen: the SO_REUSEPORT group's sockets in group order (one socket with
 *        SFU_GATEWAY_ACCEPT_MODE=shared).
 */
#define UPGRADE_ENV "SFU_GATEWAY_UPGRADE"
#define UPGRADE_VERSION 1
#define UPGRADE_MAX_LISTEN 1024

struct upgrade_fds {
	pid_t old_master;
	int ready, shm, lock, pid_file, keeper; /* pid_file, keeper: -1 when none */
	unsigned n_listen;
	int listen[UPGRADE_MAX_LISTEN];
};

/* main, before anything else: remembers argv (kept as is, it is execv()'s) and
 * the binary's path from /proc/self/exe. 0 or -errno (then no upgrade can
 * start; the gateway runs anyway). */
int upgrade_init(char **argv);
/* The binary's path as upgrade_init found it ("" when it could not). */
const char *upgrade_binary(void);

/*
 * New master, in main before anything else: reads UPGRADE_ENV and removes it
 * from the environment (children and later upgrades must not see it).
 * Returns 0 when absent, 1 when present and well formed (every descriptor
 * open, FD_CLOEXEC set again: see upgrade_inherited), or -EINVAL with the
 * reason in err.
 */
int upgrade_read_env(char *err, size_t errlen);
/* What upgrade_read_env found: NULL when this process is no upgrade. */
const struct upgrade_fds *upgrade_inherited(void);
/*
 * New master that cannot take over: sends "E" and the message on the ready
 * pipe, so that the old master logs why (its stderr may be /dev/null), and
 * closes it. Does nothing when this process is no upgrade or already said
 * it was ready.
 */
void upgrade_refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* New master, once its workers accept connections: sends the ready byte and
 * closes the pipe. 0 or -errno. */
int upgrade_ready(void);

/* Old master: forks, and in the child clears FD_CLOEXEC on u's descriptors,
 * sets UPGRADE_ENV and execs the binary. The child's pid, or -errno. A failed
 * exec is logged by the child, which exits 127. */
pid_t upgrade_spawn(const struct upgrade_fds *u);

/* Writes the variable's value for u into out. 0, or -ENOSPC. */
int upgrade_encode(const struct upgrade_fds *u, char *out, size_t outlen);
/* Parses a value of the variable (no check of the descriptors). 0 or -EINVAL. */
int upgrade_decode(const char *text, struct upgrade_fds *u);

/* Checks that fd is a listening TCP socket; its address (as inet_ntop writes
 * it) and port into addr and *port. 0 or -EINVAL/-errno. */
int upgrade_listener(int fd, char *addr, size_t addrlen, uint16_t *port);

#endif
