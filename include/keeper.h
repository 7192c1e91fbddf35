/* Keeper: a process that stays root after --user, only to remove the pid and lock files. */
#ifndef SFU_KEEPER_H
#define SFU_KEEPER_H

#include <stdbool.h>
#include <sys/types.h>

#include "lockfile.h"

/*
 * Entry point of the keeper, forked by a master that runs as root and is
 * about to switch to the --user user, which could not remove files from a
 * root-owned directory such as /run. It holds pid_file (which names master)
 * and lock (each may be unused: fd -1), ignores the stop and reload signals
 * (a Ctrl-C of the process group must not take it before the master), and
 * waits on fd: when the master writes KEEPER_BYE (a clean stop), it removes
 * the files that are still ours, then exits; when fd reaches end-of-file
 * without it (the master crashed), it leaves them, as a crashed master
 * without --user does (LSB: "dead with a pid file"). It reads nothing else
 * and touches no other file. detach: point stdin, stdout and stderr at
 * /dev/null (--daemon). Never returns.
 * A binary upgrade (upgrade.h) hands the pipe to the new master, which
 * writes KEEPER_MASTER followed by its pid (an int32_t, in one write) once
 * it has taken over: the pid file then names it, and only a file naming the
 * current master is removed.
 */
#define KEEPER_BYE 'x'
#define KEEPER_MASTER 'm'
void keeper_run(int fd, struct lockfile *pid_file, struct lockfile *lock, pid_t master,
		bool detach) __attribute__((noreturn));

#endif
