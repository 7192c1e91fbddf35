/* Base64: decoding of both alphabets with optional padding, and base64url encoding. */
#ifndef SFU_BASE64_H
#define SFU_BASE64_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Upper bound of the decoded size of len input characters. */
#define BASE64_DECODED_MAX(len) ((((len) + 3) / 4) * 3)
/* Size of the unpadded base64url encoding of len bytes, without the NUL. */
#define BASE64URL_ENCODED_LEN(len) (((len) * 4 + 2) / 3)

/*
 * Decodes standard ('+' '/') or url-safe ('-' '_') base64, mixed alphabets
 * accepted as Node does, with or without '=' padding. Rejects: characters
 * outside both alphabets (whitespace included), padding anywhere but the end,
 * more than two '=', a length of 1 mod 4 after removing padding, and padding
 * that does not complete the last quantum. Non-zero unused trailing bits are
 * accepted (Node accepts them).
 * Returns the decoded length, -ENOSPC when outcap is too small, -EINVAL on bad input.
 */
ssize_t base64_decode(const char *in, size_t len, uint8_t *out, size_t outcap);

/* Encodes base64url without padding; writes a NUL. Returns the length written
 * (without the NUL) or -ENOSPC when outcap < BASE64URL_ENCODED_LEN(len) + 1. */
ssize_t base64url_encode(const uint8_t *in, size_t len, char *out, size_t outcap);

/* Encodes standard base64 with padding; writes a NUL. Length or -ENOSPC. */
ssize_t base64_encode(const uint8_t *in, size_t len, char *out, size_t outcap);

/* The longest key (decoded bytes), and the longest text of one. */
#define BASE64_KEY_MAX 128
#define BASE64_KEY_B64_MAX (((BASE64_KEY_MAX + 2) / 3) * 4)

/* Decodes a key given as standard or url-safe base64, padded or not (as the
 * existing gateway and Odoo accept keys). Returns the decoded length, 1 to
 * min(outcap, BASE64_KEY_MAX), or -EINVAL; nothing of the key is left in
 * temporary memory. */
ssize_t base64_decode_key(const char *b64, uint8_t *out, size_t outcap);

#endif
