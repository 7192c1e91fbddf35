/* libFuzzer targets: the entry points every target defines and the check they fail with. */
#ifndef SFU_FUZZ_H
#define SFU_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property the code under test promises was broken: abort, so libFuzzer
 * saves the input as a crash like any sanitizer report. */
#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				#cond);                                               \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* Whether c may appear in a one-line message: no line break, no other control
 * character (a log reader's terminal must not be steered); a tab may, as TOML
 * allows it in quoted keys, which messages quote. */
static inline int fuzz_one_line_char(char c)
{
	return c == '\t' || ((unsigned char)c >= 0x20 && c != 0x7f);
}

#endif
