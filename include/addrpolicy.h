/* Address policy: which addresses a self-registering SFU may have ([registration] sfu_networks). */
#ifndef SFU_ADDRPOLICY_H
#define SFU_ADDRPOLICY_H

#include <stddef.h>

#include "config.h"

/*
 * Whether a registered SFU may have this address (already normalised by
 * address_parse), under the tunables' sfu_networks:
 *  - never: a cloud metadata endpoint (169.254.169.254, 169.254.170.2,
 *    100.100.100.200, fd00:ec2::254, and the names metadata,
 *    metadata.google.internal, metadata.goog, instance-data,
 *    instance-data.ec2.internal), an unspecified address (0.0.0.0/8, ::, which
 *    reach this host), a multicast or broadcast one, and localhost names
 *    (localhost, *.localhost: another name for a loopback address that no
 *    address compares equal to);
 *  - with sfu_networks empty (the default): any other IP address except
 *    link-local ones (169.254.0.0/16, fe80::/10), and any other DNS name;
 *  - with sfu_networks set: only IP addresses inside one of those networks
 *    (link-local ones too when listed). DNS names are refused: the gateway
 *    resolves a name each time it connects, so where it leads can change after
 *    the check (DNS rebinding).
 * The scheme is not judged here. 0, or -EACCES with a one-line reason in why.
 */
int addrpolicy_check(const struct config_tunables *t, const char *address, char *why,
		     size_t whylen);

#endif
