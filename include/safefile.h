/* Safe files: open or create files where others may write, never through a planted link. */
#ifndef SFU_SAFEFILE_H
#define SFU_SAFEFILE_H

#include <sys/types.h>

/*
 * Checks an open file: a regular file (-EINVAL otherwise: a FIFO, a device, a
 * directory), with one name (-EMLINK: a hard link can name a file its planter
 * could not open) and owned by the effective user or by owner (-EPERM).
 * owner is (uid_t)-1 when only the effective user may own it. 0 or -errno.
 */
int safefile_check(int fd, uid_t owner);

/*
 * Opens path for appending, creating it with mode when absent (O_EXCL, so a
 * file created in between is opened, never truncated). A symbolic link in the
 * last component is refused (-ELOOP) and the file must pass safefile_check.
 * A FIFO cannot block the open. When the file was created, the caller runs as
 * root and owner is not (uid_t)-1, the file is given to owner so that owner can
 * open it again later (log rotation after dropping privileges). Returns the
 * descriptor (O_CLOEXEC, blocking) or -errno.
 */
int safefile_open_append(const char *path, mode_t mode, uid_t owner);

/* Why a safefile call failed, for messages: "is a symbolic link"... */
const char *safefile_strerror(int rc);

#endif
