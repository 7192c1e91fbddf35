/* Unit tests of the key check's pieces: its token's claims and how answers are read. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>
#include <uv.h>

#include "keycheck.h"
#include "token.h"

/* The claims name no session: odoo/sfu's POST /v1/disconnect then touches nothing. */
Test(keycheck, claims_name_no_session)
{
	static const uint8_t key[] = "keycheck-unit-test-key-0123456789";
	char claims[96], tok[512];
	struct token t;
	ssize_t n;

	cr_assert_eq(keycheck_claims(claims, sizeof(claims), 1700000060), 0);
	cr_assert_str_eq(claims, "{\"sessionIdsByChannel\":{},\"exp\":1700000060}");
	cr_assert_eq(keycheck_claims(claims, 10, 1700000060), -ENOSPC);
	cr_assert_eq(keycheck_claims(claims, sizeof(claims), 1700000060), 0);
	n = token_sign(claims, key, sizeof(key) - 1, tok, sizeof(tok));
	cr_assert_gt(n, 0);
	/* Valid for the SFU's own check (HS256 with its key, not expired). */
	cr_assert_eq(token_verify(tok, (size_t)n, key, sizeof(key) - 1, 1700000000, false, &t),
		     TOKEN_OK);
	cr_assert_eq(token_verify(tok, (size_t)n, key, sizeof(key) - 2, 1700000000, false, &t),
		     TOKEN_BAD_SIGNATURE);
}

/* 200: the SFU accepted the key; 422: it refused it; anything else says nothing. */
Test(keycheck, verdicts)
{
	cr_assert_eq(keycheck_verdict(0, 200), SFU_KEY_OK);
	cr_assert_eq(keycheck_verdict(0, 422), SFU_KEY_MISMATCH);
	cr_assert_eq(keycheck_verdict(0, 404), SFU_KEY_UNKNOWN);
	cr_assert_eq(keycheck_verdict(0, 400), SFU_KEY_UNKNOWN);
	cr_assert_eq(keycheck_verdict(0, 500), SFU_KEY_UNKNOWN);
	cr_assert_eq(keycheck_verdict(UV_ETIMEDOUT, 0), SFU_KEY_UNKNOWN);
	cr_assert_eq(keycheck_verdict(UV_ECONNREFUSED, 0), SFU_KEY_UNKNOWN);
	cr_assert_str_eq(keycheck_name(SFU_KEY_UNCHECKED), "unchecked");
	cr_assert_str_eq(keycheck_name(SFU_KEY_OK), "ok");
	cr_assert_str_eq(keycheck_name(SFU_KEY_MISMATCH), "mismatch");
	cr_assert_str_eq(keycheck_name(SFU_KEY_UNKNOWN), "unknown");
	cr_assert_str_eq(keycheck_name(77), "unchecked");
}
