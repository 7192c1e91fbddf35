/* Lock files: created by us, flock()ed while we run, removed only while still ours. */
#ifndef SFU_LOCKFILE_H
#define SFU_LOCKFILE_H

#include <stdbool.h>
#include <sys/types.h>

struct lockfile {
	int fd; /* -1 when not held; holds the flock() */
	dev_t dev; /* the file we created, to know it is still ours */
	ino_t ino;
	char path[4096];
};

/*
 * Takes path: creates it with O_CREAT|O_EXCL, mode 0600, and flock()s it,
 * before anybody else can open it; then sets mode. The descriptor is
 * read-only unless writable (the pid file): a lock inherited by processes
 * that drop privileges then gives them no way to write the file. We never write into a file
 * we did not create, so a link planted at path cannot redirect us.
 * When path exists:
 *  - a symbolic link: -ELOOP; not a regular file: -EINVAL (both refused);
 *  - locked by a process of our effective user: -EWOULDBLOCK, its pid (or 0
 *    when the kernel does not say, e.g. its holder has exited but its
 *    children still hold the lock) in *holder: an instance runs;
 *  - not locked (left by a crash), or locked by a process of another user (a
 *    squatter: any user may flock() a file it can read): removed and created
 *    again (a squatter is logged).
 * Returns 0 or -errno.
 */
int lockfile_acquire(struct lockfile *lf, const char *path, mode_t mode, bool writable,
		     pid_t *holder);
/*
 * Takes over a lock file whose descriptor fd a running master handed on (a
 * binary upgrade, upgrade.h): the flock() belongs to the open file, which
 * both masters now share, so the lock is never free in between. Its path
 * comes from /proc/self/fd, and must still name the same file. 0, or -ENOENT
 * when the file was removed or replaced meanwhile, or -errno.
 */
int lockfile_adopt(struct lockfile *lf, int fd);
/* Replaces the contents with "<pid>\n" (the pid file). 0 or -errno. */
int lockfile_write_pid(struct lockfile *lf, pid_t pid);
/* True while path still names the file we created (and, when pid > 0, holds pid). */
bool lockfile_ours(const struct lockfile *lf, pid_t pid);
/*
 * Removes path if it still names our file (with pid in it when pid > 0), then
 * closes (the lock goes with the last descriptor; children keep theirs).
 * Returns 0, or -errno of unlink() (e.g. -EACCES once privileges are dropped:
 * then the file stays and the caller may close later).
 */
int lockfile_remove(struct lockfile *lf, pid_t pid);
/* Closes without removing (a child that must not hold the file). */
void lockfile_close(struct lockfile *lf);

#endif
