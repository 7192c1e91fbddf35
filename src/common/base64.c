/* Base64: table-driven decoding of both alphabets and encoding to base64url or standard base64. */
#include "base64.h"

#include <string.h>

#include <errno.h>
#include <stdbool.h>

/*
 * Sextet value plus one of every byte; 0 marks a byte outside both alphabets, so the
 * table needs no non-standard range initialiser. '+' and '-' both mean 62, '/' and
 * '_' both mean 63, which is how Node's decoder accepts the two alphabets, even mixed.
 */
static const uint8_t base64_dec[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7,
	['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
	['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
	['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
	['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62,
	['+'] = 63, ['-'] = 63, ['/'] = 64, ['_'] = 64,
};

static const char base64_std_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char base64_url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The 6-bit value of ch, or -1 when ch is in neither alphabet. */
static inline int base64_sextet(char ch)
{
	return (int)base64_dec[(uint8_t)ch] - 1;
}

/* True when every one of the len bytes belongs to one of the two alphabets. */
static bool base64_all_valid(const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (base64_sextet(in[i]) < 0)
			return false;
	return true;
}

ssize_t base64_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
	size_t pad = 0, data_len, out_len, i, o = 0;

	if (len > 0 && in == NULL)
		return -EINVAL;
	while (pad < len && in[len - 1 - pad] == '=')
		pad++;
	data_len = len - pad;
	/* One leftover character carries only 6 bits: no byte can come from it. */
	if (pad > 2 || data_len % 4 == 1)
		return -EINVAL;
	/* Padding, when present, must complete the last quantum exactly ("QQ=" is wrong). */
	if (pad > 0 && len % 4 != 0)
		return -EINVAL;
	out_len = data_len / 4 * 3 + (data_len % 4 == 0 ? 0 : data_len % 4 - 1);
	if (out_len > outcap) {
		/* Bad input is reported as such whatever the capacity, so callers can
		 * tell "not base64" from "buffer too small". */
		return base64_all_valid(in, data_len) ? -ENOSPC : -EINVAL;
	}

	/* An '=' before the trailing run is an invalid character for the table. */
	for (i = 0; i + 4 <= data_len; i += 4) {
		int a = base64_sextet(in[i]), b = base64_sextet(in[i + 1]);
		int c = base64_sextet(in[i + 2]), d = base64_sextet(in[i + 3]);

		if ((a | b | c | d) < 0)
			return -EINVAL;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		out[o++] = (uint8_t)(b << 4 | c >> 2);
		out[o++] = (uint8_t)(c << 6 | d);
	}
	if (data_len - i >= 2) {
		int a = base64_sextet(in[i]), b = base64_sextet(in[i + 1]);
		int c = data_len - i == 3 ? base64_sextet(in[i + 2]) : 0;

		if ((a | b | c) < 0)
			return -EINVAL;
		out[o++] = (uint8_t)(a << 2 | b >> 4);
		if (data_len - i == 3)
			out[o++] = (uint8_t)(b << 4 | c >> 2);
	}
	return (ssize_t)o;
}

/* Shared encoder: the alphabet differs, and only standard base64 pads. */
static ssize_t base64_encode_with(const uint8_t *in, size_t len, char *out, size_t outcap,
				  const char *alphabet, bool pad)
{
	size_t need = pad ? (len + 2) / 3 * 4 : BASE64URL_ENCODED_LEN(len);
	size_t i, o = 0;

	if (outcap < need + 1 || out == NULL)
		return -ENOSPC;
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[v >> 12 & 63];
		if (pad) {
			out[o++] = '=';
			out[o++] = '=';
		}
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return (ssize_t)o;
}

ssize_t base64url_encode(const uint8_t *in, size_t len, char *out, size_t outcap)
{
	return base64_encode_with(in, len, out, outcap, base64_url_alphabet, false);
}

ssize_t base64_encode(const uint8_t *in, size_t len, char *out, size_t outcap)
{
	return base64_encode_with(in, len, out, outcap, base64_std_alphabet, true);
}

ssize_t base64_decode_key(const char *b64, uint8_t *out, size_t outcap)
{
	uint8_t tmp[BASE64_DECODED_MAX(BASE64_KEY_B64_MAX)];
	size_t len;
	ssize_t n;
	ssize_t rc;

	if (b64 == NULL || out == NULL)
		return -EINVAL;
	len = strlen(b64);
	if (len == 0 || len > BASE64_KEY_B64_MAX)
		return -EINVAL;
	n = base64_decode(b64, len, tmp, sizeof(tmp));
	if (n <= 0 || n > BASE64_KEY_MAX || (size_t)n > outcap) {
		rc = -EINVAL;
	} else {
		memcpy(out, tmp, (size_t)n);
		rc = n;
	}
	explicit_bzero(tmp, sizeof(tmp));
	return rc;
}
