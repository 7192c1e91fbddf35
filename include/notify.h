/* Notify: readiness and state messages to the service manager on the NOTIFY_SOCKET datagram protocol. */
#ifndef SFU_NOTIFY_H
#define SFU_NOTIFY_H

/*
 * systemd's sd_notify protocol, without libsystemd: each message is one
 * datagram of newline-separated KEY=VALUE lines sent to the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 * Without the variable every call does nothing and returns 0. The master
 * alone sends: READY=1 once its first workers accept connections,
 * RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a reload, STOPPING=1
 * when it stops, and MAINPID=<pid> when it hands the service to a new
 * binary (upgrade.h). The variable stays in the environment, so the new
 * binary of an upgrade can send too.
 */

/* Sends text (e.g. "READY=1\nSTATUS=serving"). 0, or -errno when the socket
 * named cannot be reached (the caller logs it: it never stops the gateway). */
int notify_send(const char *text);
/* "RELOADING=1\nMONOTONIC_USEC=<now>", as systemd wants it before a reload. */
int notify_reloading(void);

#endif
