/* Lock files: created by us, flock()ed while we run, removed only while still ours. */
#include "lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

/* Attempts of the create-or-replace loop; each lost race means another
 * process created or removed the file in between. */
#define LOCKFILE_TRIES 8

/*
 * The pid of the process holding a flock() on (dev, ino), as /proc/locks
 * lists it ("1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"); 0 when not
 * listed or listed without a pid (its holder exited, children hold it).
 */
static pid_t lockfile_holder(dev_t dev, ino_t ino)
{
	FILE *f = fopen("/proc/locks", "re");
	char line[256];
	pid_t pid = 0;

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned maj, min;
		unsigned long long i;
		int p;

		/* "->" marks a waiter, not a holder. */
		if (strstr(line, "->") != NULL || strstr(line, "FLOCK") == NULL)
			continue;
		if (sscanf(line, "%*d: FLOCK %*s %*s %d %x:%x:%llu", &p, &maj, &min, &i) == 4 &&
		    maj == major(dev) && min == minor(dev) && i == (unsigned long long)ino) {
			pid = p > 0 ? p : 0;
			break;
		}
	}
	fclose(f);
	return pid;
}

/* The real uid of pid from /proc, or (uid_t)-1 when it cannot be read. */
static uid_t lockfile_uid_of(pid_t pid)
{
	char path[64], line[256];
	uid_t uid = (uid_t)-1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return uid;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned u;

		if (sscanf(line, "Uid: %u", &u) == 1) {
			uid = (uid_t)u;
			break;
		}
	}
	fclose(f);
	return uid;
}

/*
 * path exists and is not ours. Returns 0 when it may be replaced (removed
 * here), -EWOULDBLOCK when a process of ours holds it, or -errno.
 */
static int lockfile_clear(const char *path, pid_t *holder)
{
	struct stat st, now;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : (errno == ENXIO ? -EINVAL : -errno);
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		pid_t pid = lockfile_holder(st.st_dev, st.st_ino);
		uid_t uid = pid > 0 ? lockfile_uid_of(pid) : (uid_t)-1;

		if (errno != EWOULDBLOCK) {
			rc = -errno;
			goto out;
		}
		/* Unknown holders count as ours: refusing to start is the safe side.
		 * (A holder that exited while its children keep the lock is listed
		 * under its old pid: no pid is better than a dead one.) */
		if (uid == (uid_t)-1 || uid == geteuid()) {
			*holder = uid == (uid_t)-1 ? 0 : pid;
			rc = -EWOULDBLOCK;
			goto out;
		}
		log_warn("lockfile: %s is locked by pid %d of uid %u, not by this user: "
			 "replacing it", path, (int)pid, (unsigned)uid);
	}
	/* Left by a crash (or squatted): remove it if it is still the file we
	 * looked at; the caller creates a new one. */
	if (lstat(path, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino &&
	    unlink(path) != 0 && errno != ENOENT)
		rc = -errno;
out:
	close(fd);
	return rc;
}

int lockfile_acquire(struct lockfile *lf, const char *path, mode_t mode, bool writable,
		     pid_t *holder)
{
	int flags = (writable ? O_RDWR : O_RDONLY) | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;

	memset(lf, 0, sizeof(*lf));
	lf->fd = -1;
	*holder = 0;
	if (strlen(path) >= sizeof(lf->path))
		return -ENAMETOOLONG;
	snprintf(lf->path, sizeof(lf->path), "%s", path);
	for (int i = 0; i < LOCKFILE_TRIES; i++) {
		/* 0600 until locked: nobody else can open it, so nobody else can
		 * flock() it before we do. */
		int fd = open(path, flags, 0600), rc;
		struct stat st;

		if (fd < 0) {
			if (errno != EEXIST)
				return -errno;
			rc = lockfile_clear(path, holder);
			if (rc != 0)
				return rc;
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 ||
		    fchmod(fd, mode) != 0) {
			rc = -errno;
			unlink(path);
			close(fd);
			return rc;
		}
		lf->fd = fd;
		lf->dev = st.st_dev;
		lf->ino = st.st_ino;
		return 0;
	}
	return -EAGAIN;
}

int lockfile_adopt(struct lockfile *lf, int fd)
{
	char link[64];
	struct stat st, now;
	ssize_t n;

	memset(lf, 0, sizeof(*lf));
	lf->fd = -1;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, lf->path, sizeof(lf->path) - 1);
	if (n <= 0 || (size_t)n >= sizeof(lf->path) - 1)
		return n < 0 ? -errno : -ENAMETOOLONG;
	lf->path[n] = '\0';
	if (fstat(fd, &st) != 0)
		return -errno;
	/* A removed file reads "path (deleted)": then lstat finds another or none. */
	if (!S_ISREG(st.st_mode) || lstat(lf->path, &now) != 0 || now.st_dev != st.st_dev ||
	    now.st_ino != st.st_ino)
		return -ENOENT;
	lf->fd = fd;
	lf->dev = st.st_dev;
	lf->ino = st.st_ino;
	return 0;
}

int lockfile_write_pid(struct lockfile *lf, pid_t pid)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);

	if (lf->fd < 0)
		return -EBADF;
	if (ftruncate(lf->fd, 0) != 0)
		return -errno;
	if (pwrite(lf->fd, buf, (size_t)n, 0) != n)
		return errno ? -errno : -EIO;
	return 0;
}

bool lockfile_ours(const struct lockfile *lf, pid_t pid)
{
	struct stat st;
	char buf[32];
	ssize_t n;

	if (lf->fd < 0 || lstat(lf->path, &st) != 0 || st.st_dev != lf->dev ||
	    st.st_ino != lf->ino)
		return false;
	if (pid <= 0)
		return true;
	n = pread(lf->fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return atoi(buf) == (int)pid;
}

int lockfile_remove(struct lockfile *lf, pid_t pid)
{
	int rc = 0;

	if (lf->fd < 0)
		return 0;
	if (lockfile_ours(lf, pid) && unlink(lf->path) != 0)
		rc = -errno;
	if (rc == 0)
		lockfile_close(lf);
	return rc;
}

void lockfile_close(struct lockfile *lf)
{
	if (lf->fd >= 0)
		close(lf->fd);
	lf->fd = -1;
}
