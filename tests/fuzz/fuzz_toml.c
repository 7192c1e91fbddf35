/* Fuzz target: the TOML subset parser, and the shape of the tree it returns. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "toml.h"

#define FUZZ_ERR_LEN 128

static void fuzz_walk_table(const struct toml_table *t, int max_line, int depth);

static void fuzz_walk_value(const struct toml_value *v, int max_line, int depth)
{
	FUZZ_CHECK(v != NULL);
	FUZZ_CHECK(v->line >= 1 && v->line <= max_line);
	FUZZ_CHECK(strcmp(toml_type_name(v->type), "") != 0);
	switch (v->type) {
	case TOML_STRING:
		FUZZ_CHECK(v->u.s != NULL);
		(void)strlen(v->u.s);
		break;
	case TOML_BOOL:
		FUZZ_CHECK(v->u.b == 0 || v->u.b == 1);
		break;
	case TOML_ARRAY:
		/* 32 nested arrays, and tables inside arrays of tables. */
		FUZZ_CHECK(depth < 200);
		for (size_t i = 0; i < v->u.arr.n; i++)
			fuzz_walk_value(v->u.arr.items[i], max_line, depth + 1);
		break;
	case TOML_TABLE:
		fuzz_walk_table(v->u.tab, max_line, depth + 1);
		break;
	case TOML_INT:
	case TOML_FLOAT:
		break;
	}
}

static void fuzz_walk_table(const struct toml_table *t, int max_line, int depth)
{
	FUZZ_CHECK(t != NULL && depth < 200);
	FUZZ_CHECK(t->n <= 1024);
	for (size_t i = 0; i < t->n; i++) {
		FUZZ_CHECK(t->keys[i] != NULL);
		/* Keys are unique in a table (a redefinition is an error), so a
		 * lookup finds exactly this value. */
		FUZZ_CHECK(toml_get(t, t->keys[i]) == t->vals[i]);
		fuzz_walk_value(t->vals[i], max_line, depth);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct toml_table *t = (struct toml_table *)&t;
	char *text = malloc(size + 1), *err = malloc(FUZZ_ERR_LEN);
	int rc, lines = 1;

	FUZZ_CHECK(text != NULL && err != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	for (size_t i = 0; i < size && data[i] != '\0'; i++)
		lines += data[i] == '\n';
	rc = toml_parse_string(text, "fuzz.toml", &t, err, FUZZ_ERR_LEN);
	if (rc == 0) {
		FUZZ_CHECK(t != NULL && t->line == 0);
		fuzz_walk_table(t, lines, 0);
		toml_free(t);
	} else {
		FUZZ_CHECK(rc == -EINVAL && t == NULL);
		/* "fuzz.toml:line: reason", on one line, never quoting a value. */
		FUZZ_CHECK(strncmp(err, "fuzz.toml:", 10) == 0);
		for (const char *p = err; *p != '\0'; p++)
			FUZZ_CHECK(fuzz_one_line_char(*p));
	}
	free(text);
	free(err);
	return 0;
}
