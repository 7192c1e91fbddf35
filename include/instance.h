/* Instance lock: "does a gateway of ours run on this port?", by a lock no other user can take. */
#ifndef SFU_INSTANCE_H
#define SFU_INSTANCE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lockfile.h"

/*
 * The lock file of the instance on port: "sfu-gateway.<port>.lock" in the
 * first of these directories that exists and that only its owner (root or
 * us) can write to:
 *   $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=, its first entry),
 *   /run when running as root, $XDG_RUNTIME_DIR, /run/user/<uid>,
 *   else /tmp/sfu-gateway-<uid>, created with mode 0700 and used only while
 *   it is ours and 0700.
 * Writes the path into out. Returns 0, or -errno with the reason in err (e.g.
 * /tmp/sfu-gateway-<uid> made by another user).
 */
int instance_lock_path(uint16_t port, char *out, size_t outlen, char *err, size_t errlen);

/*
 * Takes the instance lock (lockfile_acquire, mode 0600 in a directory only
 * its owner writes to: no other user can create, open or flock it). Its
 * descriptor, read-only, is inherited by every child of the master, so the
 * lock is free only once the whole process tree is gone. Returns 0; -EWOULDBLOCK when a
 * gateway of ours runs on this port (its pid in *holder when known); or
 * -errno with the reason in err.
 */
int instance_lock(struct lockfile *lf, uint16_t port, pid_t *holder, char *err, size_t errlen);

#endif
