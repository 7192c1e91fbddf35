/* Run as: the service user of --user, looked up once and switched to for good. */
#include "runas.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

int runas_lookup(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(name);
	if (pw == NULL)
		return errno != 0 && errno != ENOENT && errno != ESRCH ? -errno : -ENOENT;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int runas_switch(uid_t uid, gid_t gid)
{
	/* Groups first: once the uid changed we could no longer drop them. */
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0)
		return -errno;
	return 0;
}
