/* Packaging: the systemd unit verified, logrotate against a live gateway, the .deb installed, upgraded and purged. */
#include <criterion/criterion.h>

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define PK_GW_KEY "cGFja2FnZS10ZXN0LWdhdGV3YXkta2V5LTAxMjM0NTY3ODlhYmNkZWY="
#define PK_REG_KEY PK_GW_KEY
#define PK_SFU_KEY "cGFja2FnZS10ZXN0LXNmdS1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWo="

/* ---- small tools */

/* Runs a shell command, its output appended to the tmpdir's pk.out; its exit status. */
static int pk_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int pk_sh(const char *fmt, ...)
{
	char cmd[8192], full[8704];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "{ %s ; } >>'%s/pk.out' 2>&1", cmd, harness_tmpdir());
	st = system(full);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The end of what the commands printed, for failure messages. */
static const char *pk_out(void)
{
	static char buf[8192];
	char path[300], *text;
	size_t n;

	snprintf(path, sizeof(path), "%s/pk.out", harness_tmpdir());
	text = harness_read_file(path);
	n = text ? strlen(text) : 0;
	snprintf(buf, sizeof(buf), "%s", text ? text + (n > 6000 ? n - 6000 : 0) : "");
	free(text);
	return buf;
}

static bool pk_has(const char *path, const char *needle)
{
	char *text = harness_read_file(path);
	bool has = text != NULL && strstr(text, needle) != NULL;

	free(text);
	return has;
}

/* The source tree (the Makefile's directory) and the binaries' BUILD directory. */
static const char *pk_build_dir(void)
{
	static char dir[PATH_MAX];
	const char *bin = getenv("SFU_GATEWAY_BIN");

	if (realpath(bin != NULL ? bin : "build/sfu-gateway", dir) == NULL)
		cr_assert_fail("the gateway binary is not built");
	return dirname(dir);
}

/* A tool this suite needs: present, or the test fails under CI and is skipped elsewhere. */
static void pk_need(const char *tool, const char *package)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s > /dev/null 2>&1", tool);
	if (system(cmd) == 0)
		return;
	snprintf(cmd, sizeof(cmd), "%s is missing: install the Debian package %s "
		 "(scripts/deps.sh test)", tool, package);
	harness_absent(cmd);
}

/* ---- the systemd unit */

Test(package, systemd_unit_verifies_clean, .fini = harness_cleanup, .timeout = 120)
{
	char root[300], unit[400], copy[400];
	const char *b = pk_build_dir();
	char *text;
	int rc;

	pk_need("systemd-analyze", "systemd");
	snprintf(root, sizeof(root), "%s/root", harness_tmpdir());
	rc = pk_sh("make -s BUILD='%s' -o '%s/sfu-gateway' -o '%s/sfu-gateway-agent' install "
		   "DESTDIR='%s' PREFIX=/usr",
		   b, b, b, root);
	cr_assert_eq(rc, 0, "make install: %s", pk_out());
	snprintf(unit, sizeof(unit), "%s/usr/lib/systemd/system/sfu-gateway.service", root);
	text = harness_read_file(unit);
	cr_assert_not_null(text, "make install did not install %s", unit);
	cr_assert_not_null(strstr(text, "ExecStart=/usr/sbin/sfu-gateway "));
	cr_assert_not_null(strstr(text, "Type=notify"));
	cr_assert_not_null(strstr(text, "ExecReload=/bin/kill -HUP $MAINPID"));
	free(text);
	/* verify wants the binary where ExecStart says: point it into DESTDIR. The
	 * manual pages are checked with the installed package (deb test). */
	snprintf(copy, sizeof(copy), "%s/sfu-gateway.service", harness_tmpdir());
	cr_assert_eq(pk_sh("sed 's|/usr/sbin/sfu-gateway|%s/usr/sbin/sfu-gateway|g' '%s' > '%s'",
			   root, unit, copy),
		     0);
	rc = pk_sh("echo '== verify'; systemd-analyze verify --man=no '%s'", copy);
	cr_assert_eq(rc, 0, "systemd-analyze verify: %s", pk_out());
	cr_assert_null(strstr(pk_out(), "sfu-gateway.service:"), "verify is not clean: %s",
		       pk_out());
	/* The sandbox, as systemd rates it: below 2.0 is "OK". */
	rc = pk_sh("systemd-analyze security --offline=yes --threshold=20 '%s' | tail -1", copy);
	cr_assert_eq(rc, 0, "exposure above 2.0: %s", pk_out());
}

/* ---- logrotate */

static pid_t pk_master;

Test(package, logrotate_reopens_the_live_gateways_logs, .fini = harness_cleanup, .timeout = 90)
{
	char dir[300], logs[320], run[320], conf[400], state[400], pid_file[400], err_log[400],
		access_log[400], toml[1024], cmd[2400];
	const char *env[] = { "SFU_GATEWAY_KEY=" PK_GW_KEY, NULL };
	const char *args[] = { "--workers", "2", "--pid-file", pid_file, "--log-file", err_log,
			       "--config", NULL, NULL };
	struct harness_proc *gw;
	struct harness_resp *r;
	int64_t deadline;

	pk_need("logrotate", "logrotate");
	snprintf(dir, sizeof(dir), "%s", harness_tmpdir());
	snprintf(logs, sizeof(logs), "%s/log", dir);
	snprintf(run, sizeof(run), "%s/run", dir);
	cr_assert_eq(mkdir(logs, 0750), 0);
	cr_assert_eq(mkdir(run, 0755), 0);
	snprintf(pid_file, sizeof(pid_file), "%s/sfu-gateway.pid", run);
	snprintf(err_log, sizeof(err_log), "%s/sfu-gateway.log", logs);
	snprintf(access_log, sizeof(access_log), "%s/access.log", logs);
	snprintf(toml, sizeof(toml), "[log]\naccess = \"%s\"\n", access_log);
	args[7] = harness_write_file("lr.toml", toml);
	gw = harness_gateway_up(env, args);
	pk_master = gw->pid;

	r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	cr_assert_eq(harness_get(gw->port, "/before-rotation", NULL, r), 0);
	deadline = harness_now_ms() + 10000;
	while (!pk_has(access_log, "/before-rotation")) {
		cr_assert_lt(harness_now_ms(), deadline, "no access line before the rotation");
		poll(NULL, 0, 50);
	}

	/* The shipped configuration, with this test's directories for its paths. */
	snprintf(conf, sizeof(conf), "%s/logrotate.conf", dir);
	snprintf(state, sizeof(state), "%s/logrotate.state", dir);
	snprintf(cmd, sizeof(cmd),
		 "sed -e 's|/var/log/sfu-gateway|%s|g' -e 's|/run/sfu-gateway/sfu-gateway.pid|%s|' "
		 "etc/sfu-gateway.logrotate > '%s' && chmod 0644 '%s'",
		 logs, pid_file, conf, conf);
	cr_assert_eq(pk_sh("%s", cmd), 0, "%s", pk_out());
	cr_assert_eq(pk_sh("logrotate -v -f -s '%s' '%s'", state, conf), 0, "logrotate: %s",
		     pk_out());
	{
		char rotated[420];

		snprintf(rotated, sizeof(rotated), "%s.1", access_log);
		cr_assert(pk_has(rotated, "/before-rotation"), "logrotate did not move %s: %s",
			  access_log, pk_out());
	}
	/* The gateway writes new files after logrotate's USR1. */
	deadline = harness_now_ms() + 10000;
	for (;;) {
		cr_assert_eq(harness_get(gw->port, "/after-rotation", NULL, r), 0);
		if (pk_has(access_log, "/after-rotation"))
			break;
		cr_assert_lt(harness_now_ms(), deadline, "no new %s after logrotate: %s", access_log,
			     pk_out());
		poll(NULL, 0, 100);
	}
	{
		char body[512];
		struct harness_resp *hb;

		snprintf(body, sizeof(body),
			 "{\"status\": \"up\", \"address\": \"http://10.7.0.1:8070\", \"key\": \"%s\", "
			 "\"channels\": 0, \"sessions\": 0, \"cpuUsage\": 0.1, \"memoryUsage\": 0.1}",
			 PK_SFU_KEY);
		hb = harness_heartbeat(gw->port, "http://10.7.0.1:8070", PK_REG_KEY, body);
		cr_assert_eq(hb->status, 200, "%d %s", hb->status, hb->body);
		free(hb);
	}
	deadline = harness_now_ms() + 10000;
	while (!pk_has(err_log, "sfu=http://10.7.0.1:8070")) {
		cr_assert_lt(harness_now_ms(), deadline, "no new error log after logrotate");
		poll(NULL, 0, 50);
	}
	free(r);
	cr_assert_eq(harness_stop(gw, SIGTERM, 15000) >= 0, 1);
}

/* ---- the Debian package */

/* What the deb test installed and started, removed whatever failed. */
static bool pk_installed;

static void pk_deb_fini(void)
{
	if (pk_installed) {
		pk_sh("/etc/init.d/sfu-gateway stop; dpkg --purge sfu-gateway");
		pk_installed = false;
	}
	harness_cleanup();
}

/* Builds the .deb of the binaries under test as version v into dir; its path. */
static const char *pk_deb(const char *version, const char *dir)
{
	static char path[2][600];
	static int k;
	const char *b = pk_build_dir();
	char *out = path[k++ % 2];
	int rc = pk_sh("make -s BUILD='%s' -o '%s/sfu-gateway' -o '%s/sfu-gateway-agent' deb "
		       "DEB_VERSION=%s DEB_DIR='%s'",
		       b, b, b, version, dir);

	cr_assert_eq(rc, 0, "make deb: %s", pk_out());
	snprintf(out, 600, "%s/sfu-gateway_%s_", dir, version);
	{
		char cmd[800];
		FILE *p;

		snprintf(cmd, sizeof(cmd), "ls %s*.deb", out);
		p = popen(cmd, "r");
		cr_assert_not_null(p);
		cr_assert_not_null(fgets(out, 600, p), "no .deb in %s", dir);
		out[strcspn(out, "\n")] = '\0';
		pclose(p);
	}
	return out;
}

static int pk_init(const char *action)
{
	return pk_sh("echo '== init %s'; /etc/init.d/sfu-gateway %s", action, action);
}

static int pk_pid(void)
{
	char *text = harness_read_file("/run/sfu-gateway.pid");
	int pid = text != NULL ? atoi(text) : 0;

	free(text);
	return pid;
}

static bool pk_noop(int port)
{
	struct harness_resp *r = calloc(1, sizeof(*r));
	bool ok;

	cr_assert_not_null(r);
	ok = harness_get(port, "/noop", NULL, r) == 0 && r->status == 200;
	free(r);
	return ok;
}

static bool pk_wait_noop(int port, int timeout_ms)
{
	int64_t deadline = harness_now_ms() + timeout_ms;

	while (!pk_noop(port)) {
		if (harness_now_ms() > deadline)
			return false;
		poll(NULL, 0, 50);
	}
	return true;
}

Test(package, deb_installs_serves_upgrades_and_purges, .fini = pk_deb_fini, .timeout = 300)
{
	char dir1[300], dir2[300], text[1024];
	const char *deb1, *deb2;
	struct passwd *pw;
	int port = harness_free_port(), first, second, rc;
	struct stat st;

	if (geteuid() != 0)
		harness_absent("the package test installs a .deb: run it as root "
			       "(CI runs as root)");
	pk_need("dpkg-deb", "dpkg");
	pk_need("dpkg-shlibdeps", "dpkg-dev");
	pk_need("lintian", "lintian");
	/* Never over an operator's real installation. */
	cr_assert_neq(pk_sh("dpkg-query -W -f='${Status}' sfu-gateway | grep -q 'ok installed'"), 0,
		      "a sfu-gateway package is installed on this machine: the test leaves it alone");
	cr_assert_neq(stat("/etc/sfu-gateway", &st), 0,
		      "/etc/sfu-gateway exists: the test leaves this machine's gateway alone");
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	snprintf(dir1, sizeof(dir1), "%s/v1", harness_tmpdir());
	snprintf(dir2, sizeof(dir2), "%s/v2", harness_tmpdir());
	deb1 = pk_deb("0.1.0-1", dir1);
	deb2 = pk_deb("0.1.0-2", dir2);

	/* lintian: nothing left but what pkg/deb/lintian-overrides explains. */
	rc = pk_sh("echo '== lintian'; lintian --tag-display-limit 0 '%s' | "
		   "grep -v 'root privileges' | grep -E '^[EW]:' && exit 1 || exit 0",
		   deb1);
	cr_assert_eq(rc, 0, "lintian: %s", pk_out());

	pk_installed = true;
	rc = pk_sh("echo '== install'; dpkg -i '%s'", deb1);
	cr_assert_eq(rc, 0, "dpkg -i: %s", pk_out());
	pw = getpwnam("sfu-gateway");
	cr_assert_not_null(pw, "no system user sfu-gateway after install");
	cr_assert_lt(pw->pw_uid, 1000, "a system user");
	rc = pk_sh("echo '== version'; /usr/sbin/sfu-gateway --version | grep -qx 'sfu-gateway "
		   "0.1.0'");
	cr_assert_eq(rc, 0, "--version from /usr/sbin: %s", pk_out());
	cr_assert_eq(pk_sh("/usr/sbin/sfu-gateway-agent --help | grep -q sfu-gateway-agent"), 0,
		     "%s", pk_out());
	rc = pk_sh("man -w sfu-gateway.toml && man -w 8 sfu-gateway");
	cr_assert_eq(rc, 0, "manual pages: %s", pk_out());
	if (system("command -v systemd-analyze > /dev/null 2>&1") == 0) {
		rc = pk_sh("echo '== verify installed'; systemd-analyze verify "
			   "/lib/systemd/system/sfu-gateway.service");
		cr_assert_eq(rc, 0, "systemd-analyze verify of the installed unit: %s", pk_out());
	}
	cr_assert_eq(stat("/var/log/sfu-gateway", &st), 0);
	cr_assert_eq(st.st_uid, pw->pw_uid, "the log directory belongs to the service user");

	/* The operator's settings, in the conffiles. */
	snprintf(text, sizeof(text),
		 "cat >> /etc/default/sfu-gateway <<'E'\n"
		 "SFU_GATEWAY_KEY=%s\nDAEMON_ARGS=\"--bind 127.0.0.1 --port %d --workers 2\"\n"
		 "STOP_TIMEOUT=15\nE\n"
		 "printf '\\n# changed by the package test\\n' >> /etc/sfu-gateway/sfu-gateway.toml",
		 PK_GW_KEY, port);
	cr_assert_eq(pk_sh("%s", text), 0, "%s", pk_out());

	/* The service through the installed init script, as the service user. */
	rc = pk_init("start");
	cr_assert_eq(rc, 0, "start: %s", pk_out());
	first = pk_pid();
	cr_assert_gt(first, 1, "no pid in /run/sfu-gateway.pid: %s", pk_out());
	cr_assert(pk_wait_noop(port, 10000), "the service does not answer: %s", pk_out());
	cr_assert_eq(pk_init("status"), 0, "%s", pk_out());
	snprintf(text, sizeof(text), "grep -q '^Uid:.*\\b%u\\b' /proc/%d/status", pw->pw_uid,
		 first);
	cr_assert_eq(pk_sh("%s", text), 0, "the master does not run as sfu-gateway");
	cr_assert_eq(pk_sh("test -s /var/log/sfu-gateway/sfu-gateway.log"), 0,
		     "no log in /var/log/sfu-gateway");

	/* An upgrade keeps the changed conffiles; the running gateway is handed
	 * to the new binary (postinst asks invoke-rc.d, which a policy-rc.d may
	 * refuse, as in containers: then the operator's "upgrade" does it). */
	rc = pk_sh("echo '== upgrade'; dpkg -i '%s'", deb2);
	cr_assert_eq(rc, 0, "dpkg -i of the new version: %s", pk_out());
	cr_assert_eq(pk_sh("dpkg-query -W -f='${Version}' sfu-gateway | grep -qx 0.1.0-2"), 0);
	cr_assert_eq(pk_sh("grep -q '^# changed by the package test' "
			   "/etc/sfu-gateway/sfu-gateway.toml"),
		     0, "the config was not kept on upgrade");
	cr_assert_eq(pk_sh("grep -q '^SFU_GATEWAY_KEY=%s' /etc/default/sfu-gateway", PK_GW_KEY), 0,
		     "/etc/default/sfu-gateway was not kept on upgrade");
	cr_assert(pk_noop(port), "the gateway stopped serving during the package upgrade");
	if (pk_pid() == first) {
		rc = pk_init("upgrade");
		cr_assert_eq(rc, 0, "init script upgrade: %s", pk_out());
	}
	second = pk_pid();
	cr_assert(second > 1 && second != first, "the master was not replaced: %s", pk_out());
	cr_assert(pk_wait_noop(port, 5000), "%s", pk_out());
	cr_assert_eq(pk_init("status"), 0, "%s", pk_out());

	rc = pk_init("stop");
	cr_assert_eq(rc, 0, "stop: %s", pk_out());
	cr_assert_eq(pk_init("status"), 3, "%s", pk_out());
	cr_assert_neq(stat("/run/sfu-gateway.pid", &st), 0, "the pid file stayed");

	/* Purge: configuration, logs and the user go. */
	rc = pk_sh("echo '== purge'; dpkg --purge sfu-gateway");
	cr_assert_eq(rc, 0, "dpkg --purge: %s", pk_out());
	pk_installed = false;
	{
		static const char *const gone[] = { "/usr/sbin/sfu-gateway",
						    "/etc/sfu-gateway",
						    "/etc/default/sfu-gateway",
						    "/etc/init.d/sfu-gateway",
						    "/etc/logrotate.d/sfu-gateway",
						    "/lib/systemd/system/sfu-gateway.service",
						    "/var/log/sfu-gateway",
						    "/etc/rc2.d/K01sfu-gateway" };

		for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
			cr_assert_neq(lstat(gone[i], &st), 0, "%s stayed after purge", gone[i]);
	}
	cr_assert_null(getpwnam("sfu-gateway"), "the system user stayed after purge");
	cr_assert_neq(pk_sh("ls /etc/rc*.d | grep -q sfu-gateway"), 0, "rc links stayed");
}
