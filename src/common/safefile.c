/* Safe files: open or create files where others may write, never through a planted link. */
#include "safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Attempts of the open-or-create loop: each lost race means someone else
 * created or removed the file in between; more than a few is an attack. */
#define SAFEFILE_TRIES 8

int safefile_check(int fd, uid_t owner)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (st.st_nlink != 1)
		return -EMLINK;
	if (st.st_uid != geteuid() && (owner == (uid_t)-1 || st.st_uid != owner))
		return -EPERM;
	return 0;
}

int safefile_open_append(const char *path, mode_t mode, uid_t owner)
{
	/* O_NONBLOCK: opening a FIFO for writing would wait for a reader forever
	 * (or fail with ENXIO, which is what we want); safefile_check refuses it
	 * in any case, and the flag is cleared once the file is known regular. */
	const int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;

	for (int i = 0; i < SAFEFILE_TRIES; i++) {
		bool created = false;
		int fd = open(path, flags), rc;

		if (fd < 0 && errno == ENOENT) {
			fd = open(path, flags | O_CREAT | O_EXCL, mode);
			if (fd < 0 && errno == EEXIST)
				continue; /* created in between: open that one */
			created = fd >= 0;
		}
		if (fd < 0)
			return errno == ENXIO ? -EINVAL : -errno;
		rc = safefile_check(fd, owner);
		if (rc == 0 && created && geteuid() == 0 && owner != (uid_t)-1 &&
		    fchown(fd, owner, (gid_t)-1) != 0)
			rc = -errno;
		if (rc == 0 && fcntl(fd, F_SETFL, O_APPEND) != 0)
			rc = -errno;
		if (rc != 0) {
			close(fd);
			return rc;
		}
		return fd;
	}
	return -EAGAIN;
}

const char *safefile_strerror(int rc)
{
	switch (rc) {
	case -ELOOP: return "it is a symbolic link (refused)";
	case -EINVAL: return "it is not a regular file (refused)";
	case -EMLINK: return "it has more than one name, a hard link (refused)";
	case -EPERM: return "it belongs to another user (refused)";
	case -EAGAIN: return "it keeps being created and removed by someone else";
	default: return strerror(-rc);
	}
}
