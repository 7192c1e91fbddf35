/* sfu-gateway-agent: registers an unmodified odoo/sfu with one or more gateways by heartbeats. */
#ifndef SFU_AGENT_H
#define SFU_AGENT_H

/* The agent's whole life: flags and environment, then the heartbeat loop
 * until SIGTERM/SIGINT (sign-off sent). Returns the process exit code. */
int agent_main(int argc, char **argv);

#endif
