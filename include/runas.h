/* Run as: the service user of --user, looked up once and switched to for good. */
#ifndef SFU_RUNAS_H
#define SFU_RUNAS_H

#include <sys/types.h>

/* The uid and primary gid of user name. 0, or -ENOENT when there is no such
 * user (-errno when the lookup itself failed). */
int runas_lookup(const char *name, uid_t *uid, gid_t *gid);

/* Becomes uid/gid for good: no supplementary groups, real, effective and
 * saved ids all changed, so the process can never switch back. 0 or -errno. */
int runas_switch(uid_t uid, gid_t gid);

#endif
