/* Tests of the code's shape: the include graph has no circle, and the agent links nothing of the gateway's. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYOUT_MODS 128
#define LAYOUT_NAME 32

/* Modules (a .c and its header share the name) and who includes whom. */
static char layout_name[LAYOUT_MODS][LAYOUT_NAME];
static bool layout_edge[LAYOUT_MODS][LAYOUT_MODS];
static int layout_n;

static int layout_mod(const char *name)
{
	for (int i = 0; i < layout_n; i++)
		if (strcmp(layout_name[i], name) == 0)
			return i;
	cr_assert_lt(layout_n, LAYOUT_MODS);
	snprintf(layout_name[layout_n], LAYOUT_NAME, "%s", name);
	return layout_n++;
}

/* Adds the edges of one file: its module includes every "x.h" it names. */
static void layout_scan_file(const char *path, const char *file)
{
	char name[LAYOUT_NAME], line[512];
	const char *dot = strrchr(file, '.');
	FILE *f = fopen(path, "r");
	int self;

	cr_assert_not_null(f, "cannot open %s", path);
	snprintf(name, sizeof(name), "%.*s", (int)(dot - file), file);
	self = layout_mod(name);
	while (fgets(line, sizeof(line), f) != NULL) {
		char inc[LAYOUT_NAME];

		if (sscanf(line, "#include \"%31[a-z_].h\"", inc) == 1 && strcmp(inc, name) != 0)
			layout_edge[self][layout_mod(inc)] = true;
	}
	fclose(f);
}

static void layout_scan_dir(const char *dir, const char *ext)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	cr_assert_not_null(d, "cannot open %s (tests run from the project's root)", dir);
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		char path[512];

		if (n < 3 || strcmp(e->d_name + n - 2, ext) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		layout_scan_file(path, e->d_name);
	}
	closedir(d);
}

static void layout_load(void)
{
	layout_n = 0;
	memset(layout_edge, 0, sizeof(layout_edge));
	layout_scan_dir("include", ".h");
	layout_scan_dir("src/common", ".c");
	layout_scan_dir("src/gateway", ".c");
	layout_scan_dir("src/agent", ".c");
	cr_assert_gt(layout_n, 30, "only %d modules found", layout_n);
}

/* Depth-first search; on a circle, fails naming it. */
static void layout_visit(int u, int *color, int *stack, int depth)
{
	color[u] = 1;
	stack[depth] = u;
	for (int v = 0; v < layout_n; v++) {
		if (!layout_edge[u][v])
			continue;
		if (color[v] == 1) {
			char path[1024] = "";
			int k = depth;

			while (stack[k] != v)
				k--;
			for (; k <= depth; k++) {
				strcat(path, layout_name[stack[k]]);
				strcat(path, " -> ");
			}
			strcat(path, layout_name[v]);
			cr_assert_fail("include circle: %s", path);
		}
		if (color[v] == 0)
			layout_visit(v, color, stack, depth + 1);
	}
	color[u] = 2;
}

Test(layout, no_include_circle)
{
	int color[LAYOUT_MODS] = { 0 }, stack[LAYOUT_MODS];

	layout_load();
	for (int u = 0; u < layout_n; u++)
		if (color[u] == 0)
			layout_visit(u, color, stack, 0);
}

/* The roles sit on top: no module below them includes one (only the roles'
 * own entry points do: main starts the master, the master forks the others). */
Test(layout, nothing_below_a_role_includes_it)
{
	static const char *const roles[] = { "master", "worker", "reaper", "keeper", "agent" };
	static const char *const above[] = { "main", "master", "agent_main" };

	layout_load();
	for (int u = 0; u < layout_n; u++) {
		bool is_above = false;

		for (size_t k = 0; k < sizeof(above) / sizeof(above[0]); k++)
			is_above |= strcmp(layout_name[u], above[k]) == 0;
		if (is_above)
			continue;
		for (size_t r = 0; r < sizeof(roles) / sizeof(roles[0]); r++) {
			int v = layout_mod(roles[r]);

			cr_assert_not(layout_edge[u][v], "%s includes the role %s", layout_name[u],
				      roles[r]);
		}
	}
}

/* Defined global symbols of an object or archive, one per line, after a newline. */
static char *layout_symbols(const char *file)
{
	char cmd[1024];
	size_t cap = 1 << 20, len = 1, n;
	char *out = malloc(cap);
	FILE *p;

	cr_assert_not_null(out);
	out[0] = '\n'; /* every name, the first too, is then "\nname\n" */
	snprintf(cmd, sizeof(cmd), "nm -g --defined-only '%s' 2>/dev/null | awk 'NF==3{print $3}'",
		 file);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while ((n = fread(out + len, 1, cap - len - 1, p)) > 0)
		len += n;
	out[len] = '\0';
	cr_assert_eq(pclose(p), 0, "nm %s failed", file);
	return out;
}

/* The sidecar carries none of the gateway-only code: not one symbol the gateway's
 * library defines (selection, routes, the registry, the worker) is in its binary. */
Test(layout, agent_links_nothing_of_the_gateway)
{
	const char *agent = getenv("SFU_AGENT_BIN");
	char lib[1024], *gw, *ag, *save = NULL;
	int checked = 0;

	cr_assert_not_null(agent, "SFU_AGENT_BIN is not set (run through make check)");
	snprintf(lib, sizeof(lib), "%.*s/libgateway.a", (int)(strrchr(agent, '/') - agent), agent);
	gw = layout_symbols(lib);
	ag = layout_symbols(agent);
	cr_assert_not_null(strstr(gw, "select_best\n"), "libgateway.a has no select_best?");
	for (char *sym = strtok_r(gw, "\n", &save); sym != NULL; sym = strtok_r(NULL, "\n", &save)) {
		char needle[256];

		snprintf(needle, sizeof(needle), "\n%s\n", sym);
		cr_assert_null(strstr(ag, needle), "the agent links the gateway's %s", sym);
		checked++;
	}
	cr_assert_gt(checked, 50, "only %d gateway symbols", checked);
	free(gw);
	free(ag);
}
