/* Upgrade: hands the listening sockets, the segment and the files of a running master to a new binary (SIGUSR2). */
#include "upgrade.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static char **upgrade_argv;
static char upgrade_exe[4096];
/* The new master's inheritance; ready becomes -1 once the pipe is closed. */
static struct upgrade_fds upgrade_in;
static bool upgrade_in_set;

int upgrade_init(char **argv)
{
	ssize_t n = readlink("/proc/self/exe", upgrade_exe, sizeof(upgrade_exe) - 1);

	upgrade_argv = argv;
	if (n <= 0 || (size_t)n >= sizeof(upgrade_exe) - 1) {
		upgrade_exe[0] = '\0';
		return n < 0 ? -errno : -ENAMETOOLONG;
	}
	upgrade_exe[n] = '\0';
	return 0;
}

const char *upgrade_binary(void)
{
	return upgrade_exe;
}

int upgrade_encode(const struct upgrade_fds *u, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "version=%d master=%d ready=%d shm=%d lock=%d pid=%d "
			 "keeper=%d listen=", UPGRADE_VERSION, (int)u->old_master, u->ready, u->shm,
			 u->lock, u->pid_file, u->keeper);
	size_t o;

	if (n < 0 || (size_t)n >= outlen)
		return -ENOSPC;
	o = (size_t)n;
	for (unsigned i = 0; i < u->n_listen; i++) {
		n = snprintf(out + o, outlen - o, "%s%d", i > 0 ? "," : "", u->listen[i]);
		if (n < 0 || (size_t)n >= outlen - o)
			return -ENOSPC;
		o += (size_t)n;
	}
	return 0;
}

/* A decimal int in [min, 65535 * 1024] that ends at end (one of "", " ", ","). */
static bool upgrade_int(const char *s, const char **end, long min, int *out)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (e == s || errno != 0 || v < min || v > 65535L * 1024 ||
	    (*e != '\0' && *e != ' ' && *e != ','))
		return false;
	*out = (int)v;
	*end = e;
	return true;
}

int upgrade_decode(const char *text, struct upgrade_fds *u)
{
	static const char *const keys[] = { "version=", "master=", "ready=", "shm=",
					    "lock=",    "pid=",    "keeper=", "listen=" };
	int version = 0, master = 0;
	int *fields[] = { &version, &master, &u->ready, &u->shm, &u->lock, &u->pid_file,
			  &u->keeper };
	const char *p = text;

	memset(u, 0, sizeof(*u));
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		size_t kl = strlen(keys[k]);

		if (strncmp(p, keys[k], kl) != 0)
			return -EINVAL;
		p += kl;
		if (k + 1 < sizeof(keys) / sizeof(keys[0])) {
			/* pid and keeper may be -1 (none); the others are descriptors. */
			if (!upgrade_int(p, &p, k >= 5 ? -1 : 0, fields[k]) || *p != ' ')
				return -EINVAL;
			p++;
			continue;
		}
		while (*p != '\0') {
			if (u->n_listen >= UPGRADE_MAX_LISTEN ||
			    !upgrade_int(p, &p, 0, &u->listen[u->n_listen]))
				return -EINVAL;
			u->n_listen++;
			if (*p == ',' && p[1] != '\0')
				p++;
			else if (*p != '\0')
				return -EINVAL;
		}
	}
	if (version != UPGRADE_VERSION || master <= 1 || u->n_listen == 0)
		return -EINVAL;
	u->old_master = (pid_t)master;
	return 0;
}

/* Sets or clears FD_CLOEXEC; false when fd is not open. */
static bool upgrade_cloexec(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0)
		return false;
	flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
	return fcntl(fd, F_SETFD, flags) == 0;
}

int upgrade_read_env(char *err, size_t errlen)
{
	const char *text = getenv(UPGRADE_ENV);
	struct upgrade_fds *u = &upgrade_in;
	int fds[5];

	if (text == NULL)
		return 0;
	if (upgrade_decode(text, u) != 0) {
		snprintf(err, errlen, "%s is malformed (not from a running sfu-gateway of this "
			 "version)", UPGRADE_ENV);
		unsetenv(UPGRADE_ENV);
		return -EINVAL;
	}
	unsetenv(UPGRADE_ENV);
	/* From here on the old master can be told what is wrong (upgrade_refuse). */
	upgrade_in_set = u->ready > STDERR_FILENO && upgrade_cloexec(u->ready, true);
	fds[0] = u->ready;
	fds[1] = u->shm;
	fds[2] = u->lock;
	fds[3] = u->pid_file;
	fds[4] = u->keeper;
	for (int i = 0; i < 5; i++)
		if (fds[i] >= 0 && !upgrade_cloexec(fds[i], true)) {
			snprintf(err, errlen, "%s names descriptor %d, which is not open", UPGRADE_ENV,
				 fds[i]);
			return -EINVAL;
		}
	for (unsigned i = 0; i < u->n_listen; i++)
		if (!upgrade_cloexec(u->listen[i], true)) {
			snprintf(err, errlen, "%s names descriptor %d, which is not open", UPGRADE_ENV,
				 u->listen[i]);
			return -EINVAL;
		}
	if (u->ready <= STDERR_FILENO || u->shm <= STDERR_FILENO || u->lock <= STDERR_FILENO) {
		snprintf(err, errlen, "%s names a standard descriptor", UPGRADE_ENV);
		return -EINVAL;
	}
	return 1;
}

const struct upgrade_fds *upgrade_inherited(void)
{
	return upgrade_in_set ? &upgrade_in : NULL;
}

/* One write on the ready pipe, then it is closed. */
static int upgrade_say(const char *msg, size_t len)
{
	ssize_t n;
	int rc = 0;

	if (!upgrade_in_set || upgrade_in.ready < 0)
		return 0;
	do
		n = write(upgrade_in.ready, msg, len);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		rc = n < 0 ? -errno : -EIO;
	close(upgrade_in.ready);
	upgrade_in.ready = -1;
	return rc;
}

void upgrade_refuse(const char *fmt, ...)
{
	/* Under PIPE_BUF: the old master reads it in one piece. */
	char msg[1024];
	va_list ap;
	int n;

	msg[0] = 'E';
	va_start(ap, fmt);
	n = vsnprintf(msg + 1, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(msg) - 2)
		n = (int)sizeof(msg) - 2;
	upgrade_say(msg, (size_t)n + 1);
}

int upgrade_ready(void)
{
	return upgrade_say("1", 1);
}

pid_t upgrade_spawn(const struct upgrade_fds *u)
{
	char *text;
	pid_t pid;
	size_t len = 160 + (size_t)u->n_listen * 8;

	if (upgrade_exe[0] == '\0' || upgrade_argv == NULL)
		return -ENOENT;
	text = malloc(len);
	if (text == NULL)
		return -ENOMEM;
	if (upgrade_encode(u, text, len) != 0) {
		free(text);
		return -ENOSPC;
	}
	pid = fork();
	if (pid < 0) {
		int rc = -errno;

		free(text);
		return rc;
	}
	if (pid == 0) {
		const int fds[] = { u->ready, u->shm, u->lock, u->pid_file, u->keeper };

		/* FD_CLOEXEC belongs to this process's table: the old master's
		 * descriptors keep it. */
		for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
			if (fds[i] >= 0)
				upgrade_cloexec(fds[i], false);
		for (unsigned i = 0; i < u->n_listen; i++)
			upgrade_cloexec(u->listen[i], false);
		if (setenv(UPGRADE_ENV, text, 1) != 0)
			_exit(127);
		execv(upgrade_exe, upgrade_argv);
		log_error("master: execv() of %s failed: %s", upgrade_exe, strerror(errno));
		_exit(127);
	}
	free(text);
	return pid;
}

int upgrade_listener(int fd, char *addr, size_t addrlen, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int type = 0, listening = 0;
	socklen_t il = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) != 0)
		return -errno;
	il = sizeof(int);
	if (type != SOCK_STREAM || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &il) != 0 ||
	    !listening || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return -EINVAL;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;

		if (inet_ntop(AF_INET, &in->sin_addr, addr, (socklen_t)addrlen) == NULL)
			return -EINVAL;
		*port = ntohs(in->sin_port);
		return 0;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

		if (inet_ntop(AF_INET6, &in6->sin6_addr, addr, (socklen_t)addrlen) == NULL)
			return -EINVAL;
		*port = ntohs(in6->sin6_port);
		return 0;
	}
	return -EINVAL;
}
