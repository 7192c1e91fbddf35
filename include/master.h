/* Master: owns shared memory and listeners, forks and supervises workers and the reaper, handles signals. */
#ifndef SFU_MASTER_H
#define SFU_MASTER_H

#include "config.h"

/* Runs the daemon until a stop signal. cfg is owned by the master from here
 * (reloads replace it); cli is kept to re-apply the command line on reload.
 * ready_fd (or -1): written to and closed once the gateway listens and its
 * pid file exists, after which stdin/stdout/stderr go to /dev/null (--daemon).
 * Returns the process exit code. */
int master_run(struct config *cfg, const struct config_cli *cli, int ready_fd);

#endif
