/* Tests of base64.c: both alphabets, padding rules, every rejection, capacity and round trips. */
#include "base64.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

/* Deterministic bytes, so that a failure can be reproduced. */
static uint64_t b64t_rng_state = 0x9e3779b97f4a7c15ULL;

static uint8_t b64t_rand_byte(void)
{
	b64t_rng_state ^= b64t_rng_state << 13;
	b64t_rng_state ^= b64t_rng_state >> 7;
	b64t_rng_state ^= b64t_rng_state << 17;
	return (uint8_t)(b64t_rng_state >> 24);
}

/* Decodes a NUL-terminated string; returns what base64_decode returns. */
static ssize_t b64t_dec(const char *s, uint8_t *out, size_t cap)
{
	return base64_decode(s, strlen(s), out, cap);
}

static void b64t_assert_bytes(const char *in, const void *want, size_t want_len)
{
	uint8_t out[128];
	ssize_t n = b64t_dec(in, out, sizeof(out));

	cr_assert_eq(n, (ssize_t)want_len, "decode(\"%s\") = %zd, want %zu", in, n, want_len);
	cr_assert(memcmp(out, want, want_len) == 0, "decode(\"%s\") gave wrong bytes", in);
}

static void b64t_expect_invalid(const char *in, size_t len)
{
	uint8_t out[128];
	ssize_t n = base64_decode(in, len, out, sizeof(out));

	cr_assert_eq(n, -EINVAL, "decode of invalid input #%zu bytes \"%.*s\" gave %zd", len,
		     (int)len, in, n);
	/* The verdict must not depend on the capacity. */
	n = base64_decode(in, len, out, 0);
	cr_assert_eq(n, -EINVAL, "decode of invalid \"%.*s\" with cap 0 gave %zd", (int)len, in, n);
}

Test(base64, rfc4648_vectors)
{
	static const char *plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *padded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
					"Zm9vYmFy" };
	static const char *unpadded[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE",
					  "Zm9vYmFy" };
	char enc[64];

	for (size_t i = 0; i < 7; i++) {
		size_t len = strlen(plain[i]);

		b64t_assert_bytes(padded[i], plain[i], len);
		b64t_assert_bytes(unpadded[i], plain[i], len);
		cr_assert_eq(base64_encode((const uint8_t *)plain[i], len, enc, sizeof(enc)),
			     (ssize_t)strlen(padded[i]));
		cr_assert_str_eq(enc, padded[i]);
		cr_assert_eq(base64url_encode((const uint8_t *)plain[i], len, enc, sizeof(enc)),
			     (ssize_t)strlen(unpadded[i]));
		cr_assert_str_eq(enc, unpadded[i]);
	}
}

Test(base64, both_alphabets_and_mixed)
{
	static const uint8_t want[] = { 0xfb, 0xff, 0xbf, 0xfb, 0xef, 0xff };
	char enc[32];

	b64t_assert_bytes("+/+/++//", want, 6);
	b64t_assert_bytes("-_-_--__", want, 6);
	b64t_assert_bytes("+_-/+-/_", want, 6);
	b64t_assert_bytes("-/+_-+_/", want, 6);
	cr_assert_eq(base64_encode(want, 6, enc, sizeof(enc)), 8);
	cr_assert_str_eq(enc, "+/+/++//");
	cr_assert_eq(base64url_encode(want, 6, enc, sizeof(enc)), 8);
	cr_assert_str_eq(enc, "-_-_--__");
	/* Padded url-safe and unpadded standard both work. */
	b64t_assert_bytes("-_8=", want, 2);
	b64t_assert_bytes("+/8", want, 2);
	b64t_assert_bytes("-w==", want, 1);
	b64t_assert_bytes("+w", want, 1);
}

Test(base64, unused_trailing_bits_are_ignored)
{
	/* "Zg" is 'f'; Node ignores the four low bits of the last character. */
	b64t_assert_bytes("Zh", "f", 1);
	b64t_assert_bytes("Zv==", "f", 1);
	b64t_assert_bytes("Zm9", "fo", 2);
	b64t_assert_bytes("Zm-=", "fo", 2);
}

Test(base64, invalid_inputs)
{
	static const char *bad[] = {
		"Z",	     /* 1 mod 4 */
		"Zm9vY",     /* 1 mod 4 after a full quantum */
		"Zm9vY=",    /* padding cannot rescue 1 mod 4 */
		"Zg=",	     /* padding does not complete the quantum */
		"Zg===",     /* three '=' */
		"Zm8==",     /* too much padding for 3 characters */
		"Zm9v=",     /* padding after a full quantum */
		"Zm9v==",    /* same */
		"Zm9vYg=",   /* incomplete padding */
		"=",	     /* padding only */
		"==",	     /* padding only */
		"===",	     /* padding only */
		"====",	     /* more than two '=' */
		"=Zg=",	     /* padding at the start */
		"Zg==Zg==",  /* padding in the middle */
		"Z=g=",	     /* padding inside a quantum */
		"Zm9v Zm9v", /* space */
		" Zm9v",     /* leading space */
		"Zm9v\n",    /* newline */
		"Zm9v\r\n",  /* CRLF */
		"Zm\t9v",    /* tab */
		"Zm.v",	     /* dot */
		"Zm9*",	     /* other punctuation */
		"Zm9v!A==",  /* bad character before padding */
		"Zm9\x80",   /* high byte */
		"\xff\xff\xff\xff",
	};
	static const char with_nul[] = { 'Z', 'm', '\0', 'v' };
	static const char trailing_nul[] = { 'Z', 'm', '9', 'v', '\0' };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		b64t_expect_invalid(bad[i], strlen(bad[i]));
	b64t_expect_invalid(with_nul, sizeof(with_nul));
	b64t_expect_invalid(trailing_nul, sizeof(trailing_nul));
	cr_assert_eq(base64_decode(NULL, 4, NULL, 0), -EINVAL);
}

Test(base64, empty_input)
{
	uint8_t out[1] = { 0xaa };
	char enc[4];

	cr_assert_eq(base64_decode("", 0, out, sizeof(out)), 0);
	cr_assert_eq(base64_decode(NULL, 0, NULL, 0), 0);
	cr_assert_eq(out[0], 0xaa);
	cr_assert_eq(base64url_encode(NULL, 0, enc, 1), 0);
	cr_assert_str_eq(enc, "");
	cr_assert_eq(base64_encode(NULL, 0, enc, 1), 0);
	cr_assert_str_eq(enc, "");
	cr_assert_eq(base64url_encode(NULL, 0, enc, 0), -ENOSPC);
}

Test(base64, decode_capacity)
{
	uint8_t out[8];

	memset(out, 0xaa, sizeof(out));
	cr_assert_eq(b64t_dec("Zm9vYmE", out, 4), -ENOSPC);
	cr_assert_eq(b64t_dec("Zm9vYmE=", out, 4), -ENOSPC);
	cr_assert_eq(b64t_dec("Zm9v", out, 2), -ENOSPC);
	cr_assert_eq(b64t_dec("Zg", out, 0), -ENOSPC);
	/* Nothing was written on -ENOSPC. */
	for (size_t i = 0; i < sizeof(out); i++)
		cr_assert_eq(out[i], 0xaa);
	/* The exact size is enough and nothing is written past it. */
	cr_assert_eq(b64t_dec("Zm9vYmE", out, 5), 5);
	cr_assert(memcmp(out, "fooba", 5) == 0);
	cr_assert_eq(out[5], 0xaa);
	cr_assert_eq(b64t_dec("Zm9vYmE=", out, 5), 5);
	memset(out, 0xaa, sizeof(out));
	cr_assert_eq(b64t_dec("Zm9v", out, 3), 3);
	cr_assert_eq(out[3], 0xaa);
}

Test(base64, encode_capacity)
{
	char enc[16];

	memset(enc, 'x', sizeof(enc));
	/* "foo" needs 4 characters and the NUL either way. */
	cr_assert_eq(base64url_encode((const uint8_t *)"foo", 3, enc, 4), -ENOSPC);
	cr_assert_eq(base64_encode((const uint8_t *)"foo", 3, enc, 4), -ENOSPC);
	cr_assert_eq(enc[0], 'x');
	cr_assert_eq(base64url_encode((const uint8_t *)"foo", 3, enc, 5), 4);
	cr_assert_str_eq(enc, "Zm9v");
	/* "f": 2 characters unpadded, 4 padded. */
	cr_assert_eq(base64url_encode((const uint8_t *)"f", 1, enc, 2), -ENOSPC);
	cr_assert_eq(base64url_encode((const uint8_t *)"f", 1, enc, 3), 2);
	cr_assert_eq(base64_encode((const uint8_t *)"f", 1, enc, 4), -ENOSPC);
	cr_assert_eq(base64_encode((const uint8_t *)"f", 1, enc, 5), 4);
	cr_assert_str_eq(enc, "Zg==");
	cr_assert_eq(BASE64URL_ENCODED_LEN(1), 2);
	cr_assert_eq(BASE64URL_ENCODED_LEN(32), 43);
}

/* Turns standard padded base64 into url-safe unpadded, in place. */
static void b64t_to_url(char *s)
{
	char *w = s;

	for (char *r = s; *r != '\0'; r++) {
		if (*r == '=')
			continue;
		*w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
	}
	*w = '\0';
}

Test(base64, round_trips_all_lengths)
{
	uint8_t in[64], out[64];
	char url[128], std[128], ref[128], mixed[128];

	for (int round = 0; round < 50; round++) {
		for (size_t len = 0; len <= 64; len++) {
			ssize_t n;

			for (size_t i = 0; i < len; i++)
				in[i] = b64t_rand_byte();
			/* Standard encoding agrees with OpenSSL's independent encoder. */
			n = base64_encode(in, len, std, sizeof(std));
			cr_assert_eq(n, EVP_EncodeBlock((unsigned char *)ref, in, (int)len));
			cr_assert_str_eq(std, ref);
			cr_assert_eq(base64_decode(std, (size_t)n, out, sizeof(out)), (ssize_t)len);
			cr_assert(memcmp(in, out, len) == 0);

			n = base64url_encode(in, len, url, sizeof(url));
			cr_assert_eq(n, (ssize_t)BASE64URL_ENCODED_LEN(len));
			b64t_to_url(ref);
			cr_assert_str_eq(url, ref);
			cr_assert_eq(strcspn(url, "+/="), strlen(url));
			cr_assert_leq(BASE64_DECODED_MAX((size_t)n) - len, 2);
			cr_assert_eq(base64_decode(url, (size_t)n, out, sizeof(out)), (ssize_t)len);
			cr_assert(memcmp(in, out, len) == 0);
			/* The exact capacity is enough, one less is not. */
			cr_assert_eq(base64_decode(url, (size_t)n, out, len), (ssize_t)len);
			if (len > 0)
				cr_assert_eq(base64_decode(url, (size_t)n, out, len - 1), -ENOSPC);

			/* Randomly mixed alphabets decode the same. */
			for (size_t i = 0; i <= strlen(std); i++) {
				char c = std[i];

				if ((c == '+' || c == '/') && (b64t_rand_byte() & 1))
					c = c == '+' ? '-' : '_';
				mixed[i] = c;
			}
			cr_assert_eq(base64_decode(mixed, strlen(mixed), out, sizeof(out)),
				     (ssize_t)len);
			cr_assert(memcmp(in, out, len) == 0);
		}
	}
}

/* "0123456789abcdef" twice; 32 bytes fb ff bf ... fb fe in both alphabets; bytes 0..127 and
 * 0..128. */
#define B64_KEY_A "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
#define B64_KEY_STD "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/4="
#define B64_KEY_URL "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_4"
#define B64_KEY_128                                                                        \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+" \
	"P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9" \
	"fn8="
#define B64_KEY_129                                                                        \
	"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+" \
	"P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9" \
	"fn+A"

/* Keys as the existing gateway and Odoo accept them: either alphabet, padded or not. */
Test(base64, decode_key)
{
	uint8_t out[BASE64_KEY_MAX];

	cr_assert_eq(base64_decode_key(B64_KEY_A, out, sizeof(out)), 32);
	cr_assert_eq(memcmp(out, "0123456789abcdef", 16), 0);
	cr_assert_eq(base64_decode_key(B64_KEY_STD, out, sizeof(out)), 32);
	cr_assert_eq(out[0], 0xfb);
	cr_assert_eq(base64_decode_key(B64_KEY_URL, out, sizeof(out)), 32);
	cr_assert_eq(out[31], 0xfe);
	/* Unpadded standard and padded url-safe work too. */
	cr_assert_eq(base64_decode_key("c2l4dGVlbi1ieXRlLWtleQ", out, sizeof(out)), 16);
	cr_assert_eq(base64_decode_key("-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_4=", out,
				       sizeof(out)), 32);
	cr_assert_eq(base64_decode_key("AA", out, sizeof(out)), 1);
	cr_assert_eq(base64_decode_key(B64_KEY_128, out, sizeof(out)), 128);
	cr_assert_eq(out[127], 127);
	cr_assert_eq(base64_decode_key(B64_KEY_129, out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key(B64_KEY_A, out, 31), -EINVAL);
	cr_assert_eq(base64_decode_key("", out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key("A", out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key("AA AA", out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key("AA==AA", out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key("!!!!", out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key(B64_KEY_A "\n", out, sizeof(out)), -EINVAL);
	cr_assert_eq(base64_decode_key(NULL, out, sizeof(out)), -EINVAL);
}
