/* Instance lock: "does a gateway of ours run on this port?", by a lock no other user can take. */
#include "instance.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A directory another user cannot write to: a lock file in it can be neither
 * planted nor removed by anybody but its owner and root. Sticky world-writable
 * directories (/tmp) do not qualify: another user could create our name first.
 */
static bool instance_dir_safe(const char *dir)
{
	struct stat st;

	if (dir == NULL || dir[0] != '/' || lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return false;
	return (st.st_uid == 0 || st.st_uid == geteuid()) && (st.st_mode & 022) == 0;
}

/* $RUNTIME_DIRECTORY may list several directories, separated by ':'. */
static bool instance_first_entry(const char *list, char *out, size_t outlen)
{
	size_t n;

	if (list == NULL || list[0] == '\0')
		return false;
	n = strcspn(list, ":");
	if (n >= outlen)
		return false;
	memcpy(out, list, n);
	out[n] = '\0';
	return true;
}

/* The last resort: a private directory under /tmp, made by us, 0700. */
static int instance_tmp_dir(char *dir, size_t len, char *err, size_t errlen)
{
	struct stat st;

	snprintf(dir, len, "/tmp/sfu-gateway-%u", (unsigned)geteuid());
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int e = errno;

		snprintf(err, errlen, "mkdir() of %s failed: %s", dir, strerror(e));
		return -e;
	}
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		snprintf(err, errlen,
			 "%s is not a directory of this user with mode 0700 (another user may "
			 "have made it): remove it, or set XDG_RUNTIME_DIR",
			 dir);
		return -EPERM;
	}
	return 0;
}

int instance_lock_path(uint16_t port, char *out, size_t outlen, char *err, size_t errlen)
{
	char dir[4096], user_run[64];
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	snprintf(user_run, sizeof(user_run), "/run/user/%u", (unsigned)geteuid());
	if (instance_first_entry(getenv("RUNTIME_DIRECTORY"), dir, sizeof(dir)) &&
	    instance_dir_safe(dir))
		;
	else if (geteuid() == 0 && instance_dir_safe("/run"))
		snprintf(dir, sizeof(dir), "/run");
	else if (xdg != NULL && strlen(xdg) < sizeof(dir) && instance_dir_safe(xdg))
		snprintf(dir, sizeof(dir), "%s", xdg);
	else if (instance_dir_safe(user_run))
		snprintf(dir, sizeof(dir), "%s", user_run);
	else {
		int rc = instance_tmp_dir(dir, sizeof(dir), err, errlen);

		if (rc != 0)
			return rc;
	}
	n = snprintf(out, outlen, "%s/sfu-gateway.%u.lock", dir, (unsigned)port);
	if (n < 0 || (size_t)n >= outlen) {
		snprintf(err, errlen, "the lock file path under %s is too long", dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

int instance_lock(struct lockfile *lf, uint16_t port, pid_t *holder, char *err, size_t errlen)
{
	char path[4096];
	int rc = instance_lock_path(port, path, sizeof(path), err, errlen);

	*holder = 0;
	lf->fd = -1;
	if (rc != 0)
		return rc;
	rc = lockfile_acquire(lf, path, 0600, false, holder);
	if (rc != 0 && rc != -EWOULDBLOCK)
		snprintf(err, errlen, "lock file %s: %s", path, strerror(-rc));
	else if (rc != 0)
		snprintf(err, errlen, "lock file %s", path);
	return rc;
}
