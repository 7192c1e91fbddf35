/* Master: owns shared memory and listeners, forks and supervises workers and the reaper, acts on signals. */
#include "master.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "acceptor.h"
#include "accesslog.h"
#include "clock.h"
#include "instance.h"
#include "keeper.h"
#include "lease.h"
#include "lockfile.h"
#include "log.h"
#include "notify.h"
#include "clusterq.h"
#include "reaper.h"
#include "registry.h"
#include "runas.h"
#include "safefile.h"
#include "shm.h"
#include "upgrade.h"
#include "worker.h"

#define MASTER_BACKLOG 1024
#define MASTER_RESPAWN_MIN_MS 100
#define MASTER_RESPAWN_MAX_MS 5000
#define MASTER_STABLE_MS 10000 /* a child that lived this long resets its backoff */
/* While a binary upgrade runs, how often the master looks whether the other
 * master moved on (the new one: whether the old one has exited). */
#define MASTER_UPGRADE_POLL_MS 100

/* Signal handlers only set these; the loop in master_run acts on them (nginx). */
static volatile sig_atomic_t master_got_chld, master_got_term, master_got_quit, master_got_hup,
	master_got_usr1, master_got_usr2;

/*
 * A child process. Workers with index < n_workers are the active set; each
 * owns fds[index]. A retiring worker (after a reload shrank the set or moved
 * the listener) finishes its connections and is not respawned; its socket
 * is closed once it has exited, never before, so nothing waiting in its
 * accept queue is dropped.
 */
struct master_child {
	pid_t pid; /* 0 when not running */
	int fd; /* listening socket (workers), -1 for the reaper */
	unsigned index;
	bool retiring;
	int64_t started_ms;
	int64_t respawn_at_ms; /* when to start it again; 0 = not scheduled */
	uint32_t backoff_ms;
	bool serving; /* said it accepts connections (worker.h), at least once */
};

#define MASTER_MAX_CHILDREN 2100 /* active + retiring workers + reaper */

struct master {
	struct config *cfg;
	const struct config_cli *cli;
	struct shm_segment seg;
	unsigned n_workers; /* size of the active set */
	struct master_child *children; /* [0, n_workers) active, then retiring */
	unsigned n_children;
	struct master_child reaper;
	/* The kernel's SO_REUSEPORT group, mirrored: group[p] is the socket at
	 * position p, the index master_steer's program returns. Sockets join at
	 * listen(); closing one moves the last into its place (the kernel's
	 * reuseport_detach_sock). Active worker i always owns position i. */
	int group[MASTER_MAX_CHILDREN];
	unsigned group_n;
	bool stopping;
	struct lockfile lock; /* the instance lock (instance.h); children inherit it */
	struct lockfile pid_file; /* fd -1 without a pid file; children never hold it */
	int ready_fd; /* --daemon: the readiness pipe until written, else -1 */
	int keeper_fd; /* write end of the keeper's pipe (keeper.h), -1 without one */
	pid_t pid; /* ours, as children compare it with their parent (child.h) */
	/* Workers write their index on serving_wr once they accept; the master
	 * is ready (READY=1, an upgrade's handover) once every active one has. */
	int serving_rd, serving_wr;
	bool ready;
	bool config_applied; /* the registry and the live block follow our config */

	/* A binary upgrade (upgrade.h), as the old master: the new binary's pid
	 * until it exits, the read end of its ready pipe, and its deadline. */
	pid_t upgrade_pid;
	int upgrade_rd;
	int64_t upgrade_deadline_ms;
	bool upgrade_killed; /* it missed the deadline and was killed */
	bool upgrade_wanted; /* USR2 came before the workers all served */
	bool handed_over; /* the new master serves: drain, exit, touch nothing shared */
	pid_t handed_to; /* the new master it handed over to, for the last line */

	/* As the new master: the old one until it has exited, and the worker
	 * set and address our config asks for, applied once it has (the
	 * inherited sockets are the old master's set until then). */
	pid_t old_master;
	bool adopting; /* took the old master's things, has not taken over yet */
	bool owns_files; /* false until we took over: never remove the pid file or lock */
	bool resize_pending;
	char want_bind[256];
	uint16_t want_port;
	unsigned want_workers;
};

static void master_on_signal(int signum)
{
	switch (signum) {
	case SIGCHLD: master_got_chld = 1; break;
	case SIGTERM:
	case SIGINT: master_got_term = 1; break;
	case SIGQUIT: master_got_quit = 1; break;
	case SIGHUP: master_got_hup = 1; break;
	case SIGUSR1: master_got_usr1 = 1; break;
	case SIGUSR2: master_got_usr2 = 1; break;
	default: break;
	}
}

/* Opens one listening socket. SO_REUSEPORT lets every worker own a socket of
 * the same port so the kernel spreads connections; the master keeps every fd
 * open, so a worker that dies never takes its accept queue with it. */
static int master_listen_one(const char *bind_addr, uint16_t port, int *out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1, rc;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, bind_addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, bind_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		sl = sizeof(struct sockaddr_in6);
	} else {
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, MASTER_BACKLOG) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

/*
 * Steers new connections to the first n sockets of the SO_REUSEPORT group:
 * a classic BPF program returning random % n, the index of a socket in the
 * group (sockets join it in listen() order, so index = worker index). When a
 * reload shrinks the set, new connections stop reaching the retiring
 * sockets at once, and their workers only drain what is already queued.
 * Without the program the kernel hashes the 4-tuple over all sockets.
 */
static int master_steer(int fd, unsigned n)
{
	struct sock_filter code[] = {
		{ BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM) },
		{ BPF_ALU | BPF_MOD | BPF_K, 0, 0, n },
		{ BPF_RET | BPF_A, 0, 0, 0 },
	};
	struct sock_fprog prog;

	/* The struct has padding after len: zero it all for the kernel's copy. */
	memset(&prog, 0, sizeof(prog));
	prog.len = 3;
	prog.filter = code;

	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0)
		return -errno;
	return 0;
}

/*
 * How workers share the port. "reuseport" (default): one SO_REUSEPORT socket
 * per worker, the kernel spreads connections (steered by master_steer).
 * "shared": one socket, every worker accepts on a dup of it, and the epoll
 * wake-ups decide who wins (kept to measure the difference; see README).
 */
static bool master_shared_accept(void)
{
	const char *v = getenv("SFU_GATEWAY_ACCEPT_MODE");

	return v != NULL && strcmp(v, "shared") == 0;
}

/* Closes a listening socket, keeping the group mirror in step with the kernel. */
static void master_group_close(struct master *m, int fd)
{
	for (unsigned p = 0; p < m->group_n; p++)
		if (m->group[p] == fd) {
			m->group[p] = m->group[--m->group_n];
			break;
		}
	close(fd);
}

/*
 * Gives set[from, to) listening sockets on the configured address, so that
 * set[i] owns group position i. Positions that already exist belong to
 * retiring workers (positions past the active set always do): their sockets
 * are taken over, so the queue of each stays served; only positions past
 * the group's end get new sockets. Then steers the group to its first `to`.
 */
static int master_open_listeners(struct master *m, struct master_child *set, unsigned from,
				 unsigned to)
{
	bool shared = master_shared_accept();
	unsigned first_new = shared ? from : (m->group_n > from ? m->group_n : from);

	/* New sockets first: if one fails, nothing was taken from anybody. */
	for (unsigned i = first_new; i < to; i++) {
		int rc;

		if (shared && i > 0 && set[0].fd >= 0) {
			set[i].fd = fcntl(set[0].fd, F_DUPFD_CLOEXEC, 0);
			rc = set[i].fd < 0 ? -errno : 0;
		} else {
			rc = master_listen_one(m->cfg->bind, m->cfg->port, &set[i].fd);
			if (rc == 0 && !shared)
				m->group[m->group_n++] = set[i].fd;
		}
		if (rc != 0) {
			while (i-- > first_new) {
				master_group_close(m, set[i].fd);
				set[i].fd = -1;
			}
			return rc;
		}
	}
	for (unsigned i = from; i < first_new && i < to; i++) {
		set[i].fd = m->group[i];
		for (unsigned k = 0; k < m->n_children; k++)
			if (m->children[k].fd == set[i].fd && &m->children[k] != &set[i])
				m->children[k].fd = -1;
	}
	if (to > 0 && !shared) {
		int rc = master_steer(m->group[0], to);

		if (rc != 0)
			log_warn("master: setsockopt(SO_ATTACH_REUSEPORT_CBPF) failed: %s; "
				 "shrinking the worker set may reset queued connections",
				 strerror(-rc));
	}
	return 0;
}

static void master_close_listeners(struct master *m)
{
	for (unsigned i = 0; i < m->n_children; i++)
		if (m->children[i].fd >= 0) {
			master_group_close(m, m->children[i].fd);
			m->children[i].fd = -1;
		}
}

/*
 * In a new child: closes what is the master's alone. A child keeps its own
 * listening socket (keep; NULL for none), the mapping of the segment (not its
 * descriptor), the instance lock (so the lock is free only once the whole tree
 * is gone) and the log; never the pid file (after --user it was opened by
 * root), the readiness pipe (the caller of --daemon waits for its end) or the
 * keeper's pipe (its end tells the keeper the master is gone). The keeper
 * (keeper true) keeps the pid file, which it is there to remove. Workers
 * also keep the write end of the serving pipe and the access log; the
 * reaper and the keeper neither.
 */
static void master_close_in_child(struct master *m, const struct master_child *keep,
				  bool keeper)
{
	for (unsigned i = 0; i < m->n_children; i++)
		if (&m->children[i] != keep && m->children[i].fd >= 0)
			close(m->children[i].fd);
	if (m->seg.fd >= 0)
		close(m->seg.fd);
	if (!keeper)
		lockfile_close(&m->pid_file);
	if (m->ready_fd >= 0)
		close(m->ready_fd);
	if (m->keeper_fd >= 0)
		close(m->keeper_fd);
	if (m->serving_rd >= 0)
		close(m->serving_rd);
	if (m->upgrade_rd >= 0)
		close(m->upgrade_rd);
	/* Only workers report that they serve; only workers write access lines. */
	if (keep == NULL || keep == &m->reaper) {
		if (m->serving_wr >= 0)
			close(m->serving_wr);
		accesslog_close();
	}
}

static pid_t master_spawn(struct master *m, struct master_child *ch)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_error("master: fork() failed: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int rc;

		master_close_in_child(m, ch, false);
		if (ch != &m->reaper)
			rc = worker_run(m->seg.layout, m->pid, ch->fd, ch->index, m->cfg,
					m->serving_wr);
		else
			rc = reaper_run(m->seg.layout, m->pid);
		_exit(rc);
	}
	return pid;
}

static const char *master_role(const struct master *m, const struct master_child *ch)
{
	return ch == &m->reaper ? "reaper" : "worker";
}

static void master_start_child(struct master *m, struct master_child *ch)
{
	pid_t pid = master_spawn(m, ch);

	ch->respawn_at_ms = 0;
	if (pid < 0) {
		ch->respawn_at_ms = clock_ms() + MASTER_RESPAWN_MAX_MS;
		return;
	}
	ch->pid = pid;
	ch->started_ms = clock_ms();
	log_info("master: started %s pid=%d index=%u", master_role(m, ch), (int)pid, ch->index);
}

static struct master_child *master_find_child(struct master *m, pid_t pid)
{
	for (unsigned i = 0; i < m->n_children; i++)
		if (m->children[i].pid == pid)
			return &m->children[i];
	return m->reaper.pid == pid ? &m->reaper : NULL;
}

/* Drops retiring children that have exited, closing their sockets. */
static void master_forget_retired(struct master *m)
{
	unsigned j = m->n_workers;

	for (unsigned i = m->n_workers; i < m->n_children; i++) {
		struct master_child *ch = &m->children[i];

		if (ch->pid == 0) {
			if (ch->fd >= 0)
				master_group_close(m, ch->fd);
			continue;
		}
		m->children[j++] = *ch;
	}
	m->n_children = j;
}

static void master_upgrade_ended(struct master *m, int status);

/* Collects dead children; schedules a respawn with backoff when they keep dying. */
static void master_reap(struct master *m)
{
	int status;
	pid_t pid;
	bool retired = false;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct master_child *ch = master_find_child(m, pid);
		int64_t now = clock_ms();

		if (pid == m->upgrade_pid && m->upgrade_pid > 0) {
			master_upgrade_ended(m, status);
			continue;
		}
		if (ch == NULL)
			continue;
		ch->pid = 0;
		if (ch == &m->reaper)
			lease_release(&m->seg.layout->reaper_lease, (int32_t)pid);
		/* A writer may have died inside a seqlock section: the repair frees
		 * the half-written slot, and the sync puts a static SFU back. The sync
		 * runs whatever the count says, since a worker may have repaired first.
		 * A master that handed over leaves the registry to the new one's
		 * config (and a new one that has not taken over yet, to the old). */
		if (registry_repair(&m->seg.layout->registry) > 0)
			log_warn("master: repaired a registry slot left by pid=%d", (int)pid);
		if (m->config_applied && !m->handed_over)
			registry_sync_static(&m->seg.layout->registry, m->cfg->sfus, m->cfg->n_sfus,
					     now);
		if (ch->retiring) {
			log_info("master: retired worker pid=%d exited", (int)pid);
			retired = true;
			continue;
		}
		if (m->stopping)
			continue;
		if (WIFSIGNALED(status))
			log_warn("master: %s pid=%d killed by signal %d", master_role(m, ch), (int)pid,
				 WTERMSIG(status));
		else
			log_warn("master: %s pid=%d exited with %d", master_role(m, ch), (int)pid,
				 WEXITSTATUS(status));
		if (now - ch->started_ms >= MASTER_STABLE_MS)
			ch->backoff_ms = 0;
		ch->respawn_at_ms = now + ch->backoff_ms;
		ch->backoff_ms = ch->backoff_ms == 0 ? MASTER_RESPAWN_MIN_MS : ch->backoff_ms * 2;
		if (ch->backoff_ms > MASTER_RESPAWN_MAX_MS)
			ch->backoff_ms = MASTER_RESPAWN_MAX_MS;
	}
	if (retired && !m->stopping)
		master_forget_retired(m);
}

static void master_respawn_due(struct master *m)
{
	int64_t now = clock_ms();

	for (unsigned i = 0; i < m->n_workers; i++) {
		struct master_child *ch = &m->children[i];

		if (ch->pid == 0 && ch->respawn_at_ms != 0 && ch->respawn_at_ms <= now)
			master_start_child(m, ch);
	}
	if (m->reaper.pid == 0 && m->reaper.respawn_at_ms != 0 && m->reaper.respawn_at_ms <= now)
		master_start_child(m, &m->reaper);
}

/* Milliseconds until the next scheduled respawn, or -1 when none. */
static int64_t master_next_wakeup(const struct master *m)
{
	int64_t next = -1, now = clock_ms();

	/* An upgrade under way is watched: its deadline, or the old master's exit. */
	if ((m->upgrade_pid > 0 && !m->upgrade_killed) || m->old_master > 0)
		next = MASTER_UPGRADE_POLL_MS;
	for (unsigned i = 0; i <= m->n_workers; i++) {
		const struct master_child *ch = i < m->n_workers ? &m->children[i] : &m->reaper;

		if (ch->pid == 0 && ch->respawn_at_ms != 0) {
			int64_t d = ch->respawn_at_ms - now;

			if (d < 0)
				d = 0;
			if (next < 0 || d < next)
				next = d;
		}
	}
	return next;
}

static void master_signal_children(struct master *m, int signum)
{
	for (unsigned i = 0; i < m->n_children; i++)
		if (m->children[i].pid > 0)
			kill(m->children[i].pid, signum);
	if (m->reaper.pid > 0)
		kill(m->reaper.pid, signum);
}

static unsigned master_live_children(const struct master *m)
{
	unsigned n = m->reaper.pid > 0;

	for (unsigned i = 0; i < m->n_children; i++)
		n += m->children[i].pid > 0;
	return n;
}

/* Marks children [from, to) retiring and asks them to drain. */
static void master_retire(struct master *m, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		struct master_child *ch = &m->children[i];

		ch->retiring = true;
		ch->respawn_at_ms = 0;
		if (ch->pid > 0)
			kill(ch->pid, SIGTERM);
	}
}

/*
 * Applies a new worker count or listen address without refusing a
 * connection: new sockets and workers come up first, then the old ones are
 * steered away from and drained. Returns 0, or -errno when the new sockets
 * could not be opened (then nothing changed).
 */
static int master_resize(struct master *m, const char *bind_addr, uint16_t port, unsigned n)
{
	bool moved = strcmp(bind_addr, m->cfg->bind) != 0 || port != m->cfg->port;
	unsigned old_n = m->n_workers, keep = moved ? 0 : (n < old_n ? n : old_n);
	unsigned retiring = m->n_children - old_n;
	struct master_child *nc;
	char old_bind[sizeof(m->cfg->bind)];
	uint16_t old_port = m->cfg->port;
	int rc;

	if (n + old_n + retiring + 1 > MASTER_MAX_CHILDREN)
		return -E2BIG;
	/* New layout: kept actives, new actives, then everything that retires. */
	nc = calloc(n + old_n + retiring, sizeof(*nc));
	if (nc == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < keep; i++)
		nc[i] = m->children[i];
	for (unsigned i = keep; i < n; i++) {
		nc[i].fd = -1;
		nc[i].index = i;
	}
	snprintf(old_bind, sizeof(old_bind), "%s", m->cfg->bind);
	snprintf(m->cfg->bind, sizeof(m->cfg->bind), "%s", bind_addr);
	m->cfg->port = port;
	/* A new address is a new group; the old sockets leave with their workers. */
	if (moved)
		m->group_n = 0;
	rc = master_open_listeners(m, nc, keep, n);
	if (rc != 0) {
		snprintf(m->cfg->bind, sizeof(m->cfg->bind), "%s", old_bind);
		m->cfg->port = old_port;
		free(nc);
		return rc;
	}
	/* Old actives beyond what we keep retire; earlier retirees stay retiring. */
	{
		unsigned j = n;

		for (unsigned i = keep; i < old_n; i++)
			nc[j++] = m->children[i];
		for (unsigned i = old_n; i < m->n_children; i++)
			nc[j++] = m->children[i];
		free(m->children);
		m->children = nc;
		m->n_children = j;
	}
	m->n_workers = n;
	atomic_store(&m->seg.layout->n_workers, n);
	/* master_open_listeners() steered the group to its new size, so the
	 * retiring sockets get no new connections while their workers drain. */
	for (unsigned i = keep; i < n; i++)
		master_start_child(m, &m->children[i]);
	master_retire(m, n, n + (old_n - keep));
	log_info("master: now %u workers on %s port %u (%u retiring)", n, m->cfg->bind,
		 m->cfg->port, m->n_children - n);
	return 0;
}

/* Two listen addresses are the same address (the texts may differ: "::" and "0::0"). */
static bool master_same_address(const char *a, const char *b)
{
	unsigned char x[sizeof(struct in6_addr)], y[sizeof(struct in6_addr)];

	memset(x, 0, sizeof(x));
	memset(y, 0, sizeof(y));
	if (inet_pton(AF_INET, a, x) == 1)
		return inet_pton(AF_INET, b, y) == 1 && memcmp(x, y, 4) == 0;
	return inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1 &&
	       memcmp(x, y, sizeof(x)) == 0;
}

/*
 * New master of an upgrade whose old master still drains: the inherited
 * sockets are the old master's set, and the SO_REUSEPORT group still holds
 * its workers' sockets, so the set changes only once the old master has
 * exited (master_old_master_gone). Remembers what next asks for and keeps
 * the running address and size in it.
 */
static void master_defer_resize(struct master *m, struct config *next)
{
	bool same_addr = master_same_address(next->bind, m->cfg->bind);

	if (same_addr && next->port == m->cfg->port && next->workers == m->n_workers) {
		m->resize_pending = false;
		return;
	}
	m->resize_pending = true;
	snprintf(m->want_bind, sizeof(m->want_bind), "%s", same_addr ? m->cfg->bind : next->bind);
	m->want_port = next->port;
	m->want_workers = next->workers;
	log_info("master: %u workers on %s port %u apply once the old master (pid %d) has "
		 "exited; until then %u workers serve on %s port %u",
		 next->workers, next->bind, next->port, (int)m->old_master, m->n_workers,
		 m->cfg->bind, m->cfg->port);
	snprintf(next->bind, sizeof(next->bind), "%s", m->cfg->bind);
	next->port = m->cfg->port;
	next->workers = m->n_workers;
}

/* Reload (nginx): parse and validate a new config; on success publish it, on
 * failure keep running the old one and say why. */
static void master_reload(struct master *m)
{
	struct config *next = calloc(1, sizeof(*next));
	char err[512];
	int rc;

	if (next == NULL) {
		log_error("master: reload failed: out of memory; keeping the running config");
		return;
	}
	rc = config_load(next, m->cli, err, sizeof(err));
	if (rc != 0) {
		log_error("master: reload failed, keeping the running config: %s", err);
		free(next);
		return;
	}
	if (next->max_sfus != m->cfg->max_sfus)
		log_warn("master: max_sfus sizes the shared memory: it changes at restart only; "
			 "keeping %u", m->cfg->max_sfus);
	if (m->old_master > 0)
		master_defer_resize(m, next);
	if (strcmp(next->bind, m->cfg->bind) != 0 || next->port != m->cfg->port ||
	    next->workers != m->n_workers) {
		rc = master_resize(m, next->bind, next->port, next->workers);
		if (rc != 0) {
			log_error("master: reload failed, keeping the running config: cannot listen "
				  "on %s port %u: %s", next->bind, next->port, strerror(-rc));
			config_free(next);
			free(next);
			return;
		}
	}
	if (registry_sync_static(&m->seg.layout->registry, next->sfus, next->n_sfus,
				 clock_ms()) != 0)
		log_warn("master: registry full: some static SFUs were not added");
	shm_live_publish(m->seg.layout, &next->t);
	m->config_applied = true;
	log_set_level((enum log_level)next->t.log_level);
	/* The segment keeps the size it was created with; the pid file, user and
	 * log file stay those the processes started with (restart to change). */
	next->max_sfus = m->cfg->max_sfus;
	memcpy(next->pid_file, m->cfg->pid_file, sizeof(next->pid_file));
	memcpy(next->user, m->cfg->user, sizeof(next->user));
	memcpy(next->log_file, m->cfg->log_file, sizeof(next->log_file));
	memcpy(next->access_log, m->cfg->access_log, sizeof(next->access_log));
	next->use_syslog = m->cfg->use_syslog;
	config_free(m->cfg);
	*m->cfg = *next;
	free(next);
	log_info("master: reloaded: %zu static SFUs", m->cfg->n_sfus);
}

static void master_install_signals(sigset_t *blocked)
{
	struct sigaction sa;
	int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 };

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = master_on_signal;
	sigemptyset(&sa.sa_mask);
	sigemptyset(blocked);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaction(sigs[i], &sa, NULL);
		sigaddset(blocked, sigs[i]);
	}
	/* A write to a reset peer must be an error, not a death (inherited by children). */
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_BLOCK, blocked, NULL);
}

/* Graceful stop: children drain within shutdown_timeout_ms, then are killed. */
static void master_stop(struct master *m, bool immediate)
{
	int64_t deadline = clock_ms() + (immediate ? 0 : m->cfg->shutdown_timeout_ms + 1000);
	sigset_t empty;

	m->stopping = true;
	master_close_listeners(m);
	master_signal_children(m, immediate ? SIGKILL : SIGTERM);
	sigemptyset(&empty);
	while (master_live_children(m) > 0) {
		int64_t left = deadline - clock_ms();
		struct timespec ts;

		if (left <= 0) {
			log_warn("master: %u children still running after the shutdown timeout; killing",
				 master_live_children(m));
			master_signal_children(m, SIGKILL);
			left = 1000;
			deadline = clock_ms() + 1000;
		}
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		master_got_chld = 0;
		pselect(0, NULL, NULL, NULL, &ts, &empty);
		master_reap(m);
	}
}

/* Raises the soft limit of open files to the hard one (children inherit it):
 * each connection holds a descriptor, and each request in flight another. */
static void master_raise_nofile(void)
{
	struct rlimit rl;
	rlim_t old;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("master: getrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
		return;
	}
	old = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			log_warn("master: setrlimit(RLIMIT_NOFILE) to %llu failed: %s",
				 (unsigned long long)rl.rlim_max, strerror(errno));
			return;
		}
		log_info("master: open-file limit raised from %llu to %llu",
			 (unsigned long long)old, (unsigned long long)rl.rlim_cur);
	}
}

/* Removes what a failed start made, then exits 1 with the message. */
static void master_fail(struct master *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

/* Writes one byte, retrying on a signal. */
static void master_write_byte(int fd, char c, const char *what)
{
	ssize_t n;

	do
		n = write(fd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		log_warn("master: write() to the %s failed: %s", what,
			 n < 0 ? strerror(errno) : "short write");
}

/*
 * Removes the pid file and the instance lock when they are still ours, and
 * the segment. After --user the master may not remove files from a root
 * directory: the keeper, still root, does it when told. A master that handed
 * over to a new binary, or a new one that has not taken over, leaves them
 * (and the keeper) to the master that serves.
 */
static void master_cleanup(struct master *m)
{
	if (!m->owns_files || m->handed_over) {
		if (m->keeper_fd >= 0)
			close(m->keeper_fd);
		m->keeper_fd = -1;
		lockfile_close(&m->pid_file);
		lockfile_close(&m->lock);
	} else if (m->keeper_fd >= 0) {
		master_write_byte(m->keeper_fd, KEEPER_BYE, "keeper");
		close(m->keeper_fd);
		m->keeper_fd = -1;
		lockfile_close(&m->pid_file);
		lockfile_close(&m->lock);
	} else {
		int rc = lockfile_remove(&m->pid_file, getpid());

		if (rc != 0)
			log_warn("master: unlink() of %s failed: %s", m->pid_file.path,
				 strerror(-rc));
		rc = lockfile_remove(&m->lock, 0);
		if (rc != 0)
			log_warn("master: unlink() of %s failed: %s", m->lock.path, strerror(-rc));
	}
	shm_destroy(&m->seg);
}

static void master_fail(struct master *m, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The new binary of an upgrade tells the old master why it gives up. */
	upgrade_refuse("%s", msg);
	master_close_listeners(m);
	master_cleanup(m);
	fatal("%s", msg);
}

static void master_take_pid_file(struct master *m);

/* Takes the instance lock and the pid file, or exits saying who holds them. */
static void master_take_locks(struct master *m)
{
	char err[4200];
	pid_t holder = 0;
	int rc = instance_lock(&m->lock, m->cfg->port, &holder, err, sizeof(err));

	if (rc == -EWOULDBLOCK) {
		if (holder > 0)
			master_fail(m, "master: another sfu-gateway is running on port %u (pid %d "
				       "holds %s)", m->cfg->port, (int)holder, err);
		master_fail(m, "master: another sfu-gateway is running on port %u (%s is held)",
			    m->cfg->port, err);
	}
	if (rc != 0)
		master_fail(m, "master: cannot take the instance lock of port %u: %s", m->cfg->port,
			    err);
	master_take_pid_file(m);
}

/* Takes the pid file of the config (none when it names none), or exits saying why. */
static void master_take_pid_file(struct master *m)
{
	pid_t holder = 0;
	int rc;

	if (m->cfg->pid_file[0] == '\0')
		return;
	rc = lockfile_acquire(&m->pid_file, m->cfg->pid_file, 0644, true, &holder);
	if (rc == -EWOULDBLOCK && holder > 0)
		master_fail(m, "master: cannot write pid file %s: it is locked by a running "
			       "sfu-gateway (pid %d)", m->cfg->pid_file, (int)holder);
	if (rc == -EWOULDBLOCK)
		master_fail(m, "master: cannot write pid file %s: it is locked by a running "
			       "sfu-gateway", m->cfg->pid_file);
	if (rc != 0)
		master_fail(m, "master: cannot write pid file %s: %s", m->cfg->pid_file,
			    safefile_strerror(rc));
}

/*
 * Forks the keeper before the switch to --user (keeper.h): only it will be
 * allowed to remove the pid file and the lock from a root directory. Runs
 * only when the master is root and switches to another user.
 */
static void master_start_keeper(struct master *m, bool detach)
{
	int pfd[2];
	pid_t pid, master = getpid();

	if (pipe2(pfd, O_CLOEXEC) != 0) {
		log_warn("master: pipe2() failed: %s; the pid file will stay after a stop",
			 strerror(errno));
		return;
	}
	pid = fork();
	if (pid < 0) {
		log_warn("master: fork() failed: %s; the pid file will stay after a stop",
			 strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return;
	}
	if (pid == 0) {
		close(pfd[1]);
		master_close_in_child(m, NULL, true);
		/* The keeper needs none of the registry (nor its keys). */
		munmap(m->seg.layout, m->seg.size);
		keeper_run(pfd[0], &m->pid_file, &m->lock, master, detach);
	}
	close(pfd[0]);
	m->keeper_fd = pfd[1];
}

/* --daemon, once nothing can fail any more: the caller's stdin, stdout and
 * stderr are let go before the first child is forked, so that no process of
 * ours keeps the caller's terminal or pipe (`sfu-gateway --daemon | cat`
 * ends). Start-up errors went to the terminal; from now on there is none, so
 * a daemon without a log file logs to syslog rather than to /dev/null. */
static void master_detach(struct config *cfg)
{
	int fd;

	if (cfg->log_file[0] == '\0' && !cfg->use_syslog) {
		cfg->use_syslog = true;
		log_open(NULL, 1);
	}
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

/* ---- binary upgrade (upgrade.h): the old master's side */

/* SIGUSR2: starts the binary on disk with our sockets, segment and files. */
static void master_upgrade(struct master *m)
{
	struct upgrade_fds *u;
	int pfd[2];
	pid_t pid;

	if (m->upgrade_pid > 0) {
		log_warn("master: SIGUSR2 ignored: the upgrade to pid %d is still under way",
			 (int)m->upgrade_pid);
		return;
	}
	if (m->old_master > 0) {
		log_warn("master: SIGUSR2 ignored: the old master (pid %d) still drains; try again "
			 "once it has exited", (int)m->old_master);
		return;
	}
	if (!m->ready) {
		/* Right after a start: the sockets go on once every worker took its own. */
		log_info("master: SIGUSR2: the upgrade starts once every worker serves");
		m->upgrade_wanted = true;
		return;
	}
	m->upgrade_wanted = false;
	/* Retiring sockets would go on to the new master with no worker of its
	 * own to drain them: let them drain here first. */
	if (m->n_children > m->n_workers) {
		log_warn("master: SIGUSR2 ignored: %u workers of a reload still drain; try again "
			 "once they have exited", m->n_children - m->n_workers);
		return;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL || pipe2(pfd, O_CLOEXEC) != 0) {
		log_error("master: upgrade failed: %s; still serving",
			  u == NULL ? "out of memory" : strerror(errno));
		free(u);
		return;
	}
	/* Nonblocking on our side: the loop only reads when pselect says so. */
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	u->old_master = getpid();
	u->ready = pfd[1];
	u->shm = m->seg.fd;
	u->lock = m->lock.fd;
	u->pid_file = m->pid_file.fd;
	u->keeper = m->keeper_fd;
	if (master_shared_accept()) {
		u->listen[u->n_listen++] = m->children[0].fd;
	} else {
		for (unsigned p = 0; p < m->group_n && p < UPGRADE_MAX_LISTEN; p++)
			u->listen[u->n_listen++] = m->group[p];
	}
	pid = upgrade_spawn(u);
	close(pfd[1]);
	free(u);
	if (pid < 0) {
		close(pfd[0]);
		log_error("master: upgrade failed: cannot start %s: %s; still serving",
			  upgrade_binary()[0] ? upgrade_binary() : "the binary", strerror((int)-pid));
		return;
	}
	m->upgrade_pid = pid;
	m->upgrade_rd = pfd[0];
	m->upgrade_killed = false;
	m->upgrade_deadline_ms = clock_ms() + m->cfg->upgrade_timeout_ms;
	log_info("master: SIGUSR2: started %s as pid %d with the listening sockets and the "
		 "shared memory; it has %u ms to serve",
		 upgrade_binary(), (int)pid, m->cfg->upgrade_timeout_ms);
}

/* The upgrade failed: the registry and the live config are ours again, in
 * case the new binary had already applied its own. */
static void master_upgrade_abandon(struct master *m)
{
	if (m->upgrade_rd >= 0)
		close(m->upgrade_rd);
	m->upgrade_rd = -1;
	if (m->handed_over)
		return;
	registry_sync_static(&m->seg.layout->registry, m->cfg->sfus, m->cfg->n_sfus, clock_ms());
	shm_live_publish(m->seg.layout, &m->cfg->t);
	atomic_store(&m->seg.layout->n_workers, m->n_workers);
}

/* The new binary's process exited (status as from waitpid). */
static void master_upgrade_ended(struct master *m, int status)
{
	pid_t pid = m->upgrade_pid;
	char how[64];

	m->upgrade_pid = 0;
	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exited with %d", WEXITSTATUS(status));
	if (m->handed_over)
		log_warn("master: the new master (pid %d) %s while this one drained", (int)pid, how);
	else if (m->upgrade_killed)
		log_info("master: the stopped new binary (pid %d) %s", (int)pid, how);
	else
		log_error("master: upgrade failed: the new binary (pid %d) %s before it served; "
			  "still serving with this one",
			  (int)pid, how);
	master_upgrade_abandon(m);
}

/* The new master serves: from now on it owns the registry, the files and the
 * service; we drain our workers (SIGTERM's graceful stop) and exit. */
static void master_hand_over(struct master *m)
{
	char msg[128];
	int rc;

	m->handed_over = true;
	m->handed_to = m->upgrade_pid;
	close(m->upgrade_rd);
	m->upgrade_rd = -1;
	log_info("master: the new master (pid %d) serves: handing over, draining %u workers",
		 (int)m->upgrade_pid, m->n_workers);
	/* The service manager follows the new master from now on. */
	snprintf(msg, sizeof(msg), "MAINPID=%d\nSTATUS=handed over to pid %d",
		 (int)m->upgrade_pid, (int)m->upgrade_pid);
	rc = notify_send(msg);
	if (rc != 0)
		log_warn("master: notify of MAINPID=%d failed: %s", (int)m->upgrade_pid,
			 strerror(-rc));
}

/* The new binary's ready pipe is readable: "1" when it serves, "E<why>" when
 * it gives up, nothing (end of file) when it died. */
static void master_read_upgrade(struct master *m)
{
	char buf[1100];
	ssize_t n = read(m->upgrade_rd, buf, sizeof(buf) - 1);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0 && buf[0] == '1') {
		master_hand_over(m);
		return;
	}
	if (n > 1 && buf[0] == 'E') {
		buf[n] = '\0';
		log_error("master: upgrade refused by the new binary (pid %d): %s; still serving "
			  "with this one",
			  (int)m->upgrade_pid, buf + 1);
	}
	/* Its exit status comes with SIGCHLD; until then nothing more to read. */
	close(m->upgrade_rd);
	m->upgrade_rd = -1;
}

/* The new binary did not serve in time: it is stopped, we go on. Its workers,
 * if it had started any, get SIGTERM from the kernel when it dies (child.h). */
static void master_upgrade_deadline(struct master *m)
{
	if (m->upgrade_pid <= 0 || m->upgrade_killed || m->handed_over ||
	    clock_ms() < m->upgrade_deadline_ms)
		return;
	log_error("master: upgrade failed: the new binary (pid %d) did not serve within %u ms; "
		  "stopping it; still serving with this one",
		  (int)m->upgrade_pid, m->cfg->upgrade_timeout_ms);
	m->upgrade_killed = true;
	kill(m->upgrade_pid, SIGKILL);
}

/* ---- binary upgrade: the new master's side */

/* The pid file the old master handed on, unless our config names another. */
static void master_adopt_pid_file(struct master *m, int fd)
{
	struct stat want, have;
	int rc;

	if (fd < 0) {
		/* The old master had none: take the one our config names, if any. */
		master_take_pid_file(m);
		return;
	}
	rc = lockfile_adopt(&m->pid_file, fd);
	if (rc != 0)
		master_fail(m, "master: upgrade refused: the pid file the running gateway holds "
			       "(descriptor %d) was removed or replaced: %s", fd, strerror(-rc));
	if (m->cfg->pid_file[0] != '\0' &&
	    (stat(m->cfg->pid_file, &want) != 0 || fstat(fd, &have) != 0 ||
	     want.st_dev != have.st_dev || want.st_ino != have.st_ino))
		log_warn("master: pid_file changes at restart only; keeping %s", m->pid_file.path);
	snprintf(m->cfg->pid_file, sizeof(m->cfg->pid_file), "%s", m->pid_file.path);
}

/*
 * Takes over what the old master handed on (upgrade.h): the instance lock,
 * the pid file, the keeper's pipe, the segment (refused unless its layout is
 * ours) and the listening sockets, which become our worker set as they are.
 * Applies nothing of our config to the segment yet: that waits until our
 * workers serve (master_take_over), so a binary that fails on the way
 * changes nothing. Exits through master_fail, telling the old master why.
 */
static void master_adopt(struct master *m, const struct upgrade_fds *u)
{
	char err[512], addr[INET6_ADDRSTRLEN], other[INET6_ADDRSTRLEN];
	uint16_t port = 0, other_port = 0;
	bool shared = master_shared_accept();
	unsigned n;
	int rc;

	m->old_master = u->old_master;
	m->adopting = true;
	rc = lockfile_adopt(&m->lock, u->lock);
	if (rc != 0)
		master_fail(m, "master: upgrade refused: the instance lock the running gateway "
			       "holds (descriptor %d) was removed or replaced: %s",
			    u->lock, strerror(-rc));
	master_adopt_pid_file(m, u->pid_file);
	m->keeper_fd = u->keeper;
	rc = shm_adopt(&m->seg, u->shm, err, sizeof(err));
	if (rc != 0)
		master_fail(m, "master: upgrade refused: %s", err);
	if (m->seg.layout->capacity != m->cfg->max_sfus)
		log_warn("master: max_sfus sizes the shared memory: it changes at restart only; "
			 "keeping %u", m->seg.layout->capacity);
	m->cfg->max_sfus = m->seg.layout->capacity;
	for (unsigned i = 0; i < u->n_listen; i++) {
		rc = upgrade_listener(u->listen[i], i == 0 ? addr : other, sizeof(addr),
				      i == 0 ? &port : &other_port);
		if (rc == 0 && i > 0 && (strcmp(addr, other) != 0 || port != other_port))
			rc = -EINVAL;
		if (rc != 0)
			master_fail(m, "master: upgrade refused: descriptor %d is not a listening "
				       "socket of the running gateway's address", u->listen[i]);
	}
	/* The inherited set serves as it is until the old master has exited. */
	n = shared ? m->cfg->workers : u->n_listen;
	if (!master_same_address(addr, m->cfg->bind) || port != m->cfg->port ||
	    n != m->cfg->workers) {
		m->resize_pending = true;
		snprintf(m->want_bind, sizeof(m->want_bind), "%s", m->cfg->bind);
		m->want_port = m->cfg->port;
		m->want_workers = m->cfg->workers;
	}
	snprintf(m->cfg->bind, sizeof(m->cfg->bind), "%s", addr);
	m->cfg->port = port;
	m->cfg->workers = n;
	m->n_workers = n;
	m->children = calloc(n, sizeof(*m->children));
	if (m->children == NULL)
		master_fail(m, "master: calloc() failed");
	m->n_children = n;
	for (unsigned i = 0; i < n; i++) {
		m->children[i].index = i;
		m->children[i].fd = shared && i > 0 ? fcntl(u->listen[0], F_DUPFD_CLOEXEC, 0)
						    : u->listen[i];
		if (m->children[i].fd < 0)
			master_fail(m, "master: fcntl(F_DUPFD_CLOEXEC) failed: %s", strerror(errno));
		if (!shared)
			m->group[m->group_n++] = u->listen[i];
	}
	if (!shared && master_steer(m->group[0], n) != 0)
		log_warn("master: setsockopt(SO_ATTACH_REUSEPORT_CBPF) failed: %s", strerror(errno));
	if (m->resize_pending)
		log_info("master: %u workers on %s port %u apply once the old master (pid %d) has "
			 "exited; until then %u workers serve on %s port %u",
			 m->want_workers, m->want_bind, m->want_port, (int)m->old_master, n, addr,
			 port);
}

/*
 * Our workers serve: our config now applies to every process (the old
 * master's workers read the live block too), the pid file names us, the
 * keeper will remove it when we stop, and the old master is told to drain.
 */
static void master_take_over(struct master *m)
{
	int rc;

	if (registry_sync_static(&m->seg.layout->registry, m->cfg->sfus, m->cfg->n_sfus,
				 clock_ms()) != 0)
		log_warn("master: registry full: some static SFUs were not added");
	shm_live_publish(m->seg.layout, &m->cfg->t);
	atomic_store(&m->seg.layout->n_workers, m->n_workers);
	m->config_applied = true;
	if (m->pid_file.fd >= 0) {
		rc = lockfile_write_pid(&m->pid_file, getpid());
		if (rc != 0)
			log_warn("master: cannot write pid file %s: %s", m->pid_file.path,
				 strerror(-rc));
	}
	if (m->keeper_fd >= 0) {
		char msg[1 + sizeof(int32_t)];
		int32_t pid = (int32_t)getpid();

		msg[0] = KEEPER_MASTER;
		memcpy(msg + 1, &pid, sizeof(pid));
		if (write(m->keeper_fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
			log_warn("master: write() to the keeper failed: %s; the pid file will stay "
				 "after a stop", strerror(errno));
	}
	m->owns_files = true;
	m->adopting = false;
	rc = upgrade_ready();
	if (rc != 0)
		log_warn("master: write() to the old master's pipe failed: %s", strerror(-rc));
	log_info("master: upgrade: serving with %u workers on %s port %u; the old master "
		 "(pid %d) drains its workers and exits",
		 m->n_workers, m->cfg->bind, m->cfg->port, (int)m->old_master);
}

/* The old master has exited: the upgrade is complete, and a worker set or an
 * address our config asked for applies now. */
static void master_old_master_gone(struct master *m)
{
	int rc;

	log_info("master: the old master (pid %d) has exited: the upgrade is complete",
		 (int)m->old_master);
	m->old_master = 0;
	if (!m->resize_pending)
		return;
	m->resize_pending = false;
	rc = master_resize(m, m->want_bind, m->want_port, m->want_workers);
	if (rc != 0)
		log_error("master: cannot listen on %s port %u: %s; keeping %u workers on %s "
			  "port %u",
			  m->want_bind, m->want_port, strerror(-rc), m->n_workers, m->cfg->bind,
			  m->cfg->port);
}

/* ---- readiness */

/* Every active worker said it serves: tell whoever waits for it. */
static void master_became_ready(struct master *m)
{
	char msg[512];
	int rc;

	m->ready = true;
	if (m->adopting) {
		master_take_over(m);
		return;
	}
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving on %s port %u with %u workers",
		 m->cfg->bind, m->cfg->port, m->n_workers);
	rc = notify_send(msg);
	if (rc != 0)
		log_warn("master: notify of READY=1 failed: %s", strerror(-rc));
	if (m->upgrade_wanted)
		master_upgrade(m);
}

/* Reads the indexes workers wrote on the serving pipe (worker.h). */
static void master_read_serving(struct master *m)
{
	uint32_t idx[64];
	ssize_t n;
	bool all = true;

	while ((n = read(m->serving_rd, idx, sizeof(idx))) > 0)
		for (size_t k = 0; k < (size_t)n / sizeof(idx[0]); k++)
			if (idx[k] < m->n_workers)
				m->children[idx[k]].serving = true;
	if (m->ready)
		return;
	for (unsigned i = 0; i < m->n_workers; i++)
		all = all && m->children[i].serving;
	if (all)
		master_became_ready(m);
}

/* Sleeps until a signal, a readable pipe or the next wakeup. */
static void master_wait(struct master *m, const sigset_t *empty)
{
	int64_t wait_ms = master_next_wakeup(m);
	struct timespec ts, *tsp = NULL;
	fd_set rd;
	int nfds = 0;

	if (wait_ms >= 0) {
		ts.tv_sec = wait_ms / 1000;
		ts.tv_nsec = (wait_ms % 1000) * 1000000;
		tsp = &ts;
	}
	FD_ZERO(&rd);
	if (m->serving_rd >= 0) {
		FD_SET(m->serving_rd, &rd);
		nfds = m->serving_rd + 1;
	}
	if (m->upgrade_rd >= 0) {
		FD_SET(m->upgrade_rd, &rd);
		nfds = m->upgrade_rd + 1 > nfds ? m->upgrade_rd + 1 : nfds;
	}
	/* Signals are blocked except inside pselect: none is lost between
	 * checking the flags and going to sleep. */
	if (master_got_chld || master_got_term || master_got_quit || master_got_hup ||
	    master_got_usr1 || master_got_usr2)
		return;
	if (pselect(nfds, &rd, NULL, NULL, tsp, empty) <= 0)
		return;
	if (m->serving_rd >= 0 && FD_ISSET(m->serving_rd, &rd))
		master_read_serving(m);
	if (m->upgrade_rd >= 0 && FD_ISSET(m->upgrade_rd, &rd))
		master_read_upgrade(m);
}

/* The serving pipe (worker.h): without it, the master is ready at once. */
static void master_open_serving(struct master *m)
{
	int pfd[2];

	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) != 0) {
		log_warn("master: pipe2() failed: %s; ready without waiting for the workers",
			 strerror(errno));
		return;
	}
	m->serving_rd = pfd[0];
	m->serving_wr = pfd[1];
}

int master_run(struct config *cfg, const struct config_cli *cli, int ready_fd)
{
	const struct upgrade_fds *inherited = upgrade_inherited();
	struct master m;
	sigset_t blocked, empty;
	uid_t uid = 0;
	gid_t gid = 0;
	bool switch_user;
	int rc;

	memset(&m, 0, sizeof(m));
	m.cfg = cfg;
	m.cli = cli;
	m.n_workers = cfg->workers;
	m.ready_fd = ready_fd;
	m.keeper_fd = -1;
	m.lock.fd = -1;
	m.pid_file.fd = -1;
	m.seg.fd = -1;
	m.serving_rd = m.serving_wr = -1;
	m.upgrade_rd = -1;
	m.pid = getpid();
	m.owns_files = inherited == NULL;
	log_set_role("master");
	master_install_signals(&blocked);

	if (cfg->user[0] != '\0') {
		rc = runas_lookup(cfg->user, &uid, &gid);
		if (rc != 0)
			master_fail(&m, "master: cannot switch to user %s: %s", cfg->user,
				    rc == -ENOENT ? "no such user" : strerror(-rc));
	}
	/* A new binary of an upgrade runs as the user the old master switched to:
	 * it cannot switch again, and need not. */
	switch_user = cfg->user[0] != '\0' && !(geteuid() == uid && getuid() == uid);
	if (inherited != NULL && switch_user && geteuid() != 0)
		master_fail(&m, "master: upgrade refused: cannot switch to user %s from uid %u",
			    cfg->user, (unsigned)geteuid());
	master_raise_nofile();
	if (inherited != NULL) {
		master_adopt(&m, inherited);
	} else {
		master_take_locks(&m);
		rc = shm_create(&m.seg, cfg->max_sfus);
		if (rc != 0)
			master_fail(&m, "master: shm_open() failed: %s", strerror(-rc));
		shm_live_publish(m.seg.layout, &cfg->t);
		if (registry_sync_static(&m.seg.layout->registry, cfg->sfus, cfg->n_sfus,
					 clock_ms()) != 0)
			log_warn("master: registry full: some static SFUs were not added");
		m.config_applied = true;
		m.children = calloc(m.n_workers, sizeof(*m.children));
		if (m.children == NULL)
			master_fail(&m, "master: calloc() failed");
		m.n_children = m.n_workers;
		atomic_store(&m.seg.layout->n_workers, m.n_workers);
		for (unsigned i = 0; i < m.n_workers; i++) {
			m.children[i].fd = -1;
			m.children[i].index = i;
		}
		rc = master_open_listeners(&m, m.children, 0, m.n_workers);
		if (rc != 0)
			master_fail(&m, "master: bind() failed on %s port %u: %s", cfg->bind,
				    cfg->port, strerror(-rc));
		if (m.pid_file.fd >= 0) {
			rc = lockfile_write_pid(&m.pid_file, getpid());
			if (rc != 0)
				master_fail(&m, "master: cannot write pid file %s: %s",
					    cfg->pid_file, strerror(-rc));
		}
	}
	m.reaper.fd = -1;
	m.reaper.index = METRICS_REAPER_SLOT;
	/* Opened as root when started as root (as the log file is); workers
	 * reopen it as the user on SIGUSR1. */
	rc = accesslog_open(cfg->access_log, cfg->user[0] != '\0' ? uid : (uid_t)-1);
	if (rc != 0)
		master_fail(&m, "master: cannot open access log %s: %s", cfg->access_log,
			    safefile_strerror(rc));
	if (switch_user) {
		if (geteuid() == 0 && uid != 0 && m.keeper_fd < 0)
			master_start_keeper(&m, ready_fd >= 0);
		rc = runas_switch(uid, gid);
		if (rc != 0)
			master_fail(&m, "master: cannot switch to user %s: %s", cfg->user,
				    strerror(-rc));
	}
	if (ready_fd >= 0 || (inherited != NULL && cfg->daemonize))
		master_detach(cfg);

	master_open_serving(&m);
	/* Before the first child: workers wake the reaper through it when they
	 * queue a heartbeat for the cluster's etcd (clusterq.h). */
	rc = clusterq_wake_open();
	if (rc != 0)
		log_warn("master: eventfd() failed: %s; the reaper passes heartbeats on to etcd "
			 "at its tick only",
			 strerror(-rc));
	for (unsigned i = 0; i < m.n_workers; i++)
		master_start_child(&m, &m.children[i]);
	master_start_child(&m, &m.reaper);
	if (inherited != NULL)
		log_info("master: took over %u listening sockets on %s port %u and the shared "
			 "memory from pid %d; waiting for the workers",
			 m.n_workers, cfg->bind, cfg->port, (int)m.old_master);
	log_info("master: listening on %s port %u with %u workers, %zu static SFUs, "
		 "max_connections %zu per worker", cfg->bind, cfg->port, m.n_workers, cfg->n_sfus,
		 cfg->t.max_connections != 0 ? (size_t)cfg->t.max_connections
					     : acceptor_default_cap());
	if (ready_fd >= 0) {
		/* Tells the waiting parent of --daemon that we run. */
		master_write_byte(ready_fd, '1', "readiness pipe");
		close(ready_fd);
		m.ready_fd = -1;
	}
	if (m.serving_rd < 0)
		master_became_ready(&m);

	sigemptyset(&empty);
	for (;;) {
		master_wait(&m, &empty);
		if (master_got_quit) {
			log_info("master: SIGQUIT: stopping now");
			notify_send("STOPPING=1");
			master_stop(&m, true);
			break;
		}
		if (master_got_term) {
			log_info("master: stopping gracefully");
			notify_send("STOPPING=1");
			master_stop(&m, false);
			break;
		}
		if (master_got_chld) {
			master_got_chld = 0;
			master_reap(&m);
		}
		if (m.handed_over) {
			master_stop(&m, false);
			break;
		}
		if (m.old_master > 0 && getppid() != m.old_master)
			master_old_master_gone(&m);
		master_upgrade_deadline(&m);
		if (master_got_hup) {
			master_got_hup = 0;
			log_info("master: SIGHUP: reloading");
			notify_reloading();
			master_reload(&m);
			notify_send("READY=1");
		}
		if (master_got_usr1) {
			master_got_usr1 = 0;
			rc = log_reopen();
			if (rc != 0)
				log_warn("master: log_reopen() failed, keeping the old file: %s",
					 safefile_strerror(rc));
			rc = accesslog_reopen();
			if (rc != 0)
				log_warn("master: reopen of access log %s failed, keeping the old "
					 "file: %s",
					 cfg->access_log, safefile_strerror(rc));
			master_signal_children(&m, SIGUSR1);
		}
		if (master_got_usr2) {
			master_got_usr2 = 0;
			master_upgrade(&m);
		}
		master_respawn_due(&m);
	}
	master_close_listeners(&m);
	master_cleanup(&m);
	free(m.children);
	if (m.serving_rd >= 0)
		close(m.serving_rd);
	if (m.serving_wr >= 0)
		close(m.serving_wr);
	if (m.upgrade_rd >= 0)
		close(m.upgrade_rd);
	accesslog_close();
	if (m.handed_over)
		log_info("master: handed over to pid %d; stopped", (int)m.handed_to);
	else
		log_info("master: stopped");
	return 0;
}
