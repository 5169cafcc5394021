/* config: Redis and PostgreSQL must be given by address, never by a name
 * that hiredis or libpq would resolve with a blocking lookup on the loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static struct config *load_addr(const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/alertd-unit-XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg;
	FILE *f;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, "w");
	fprintf(f, "%s\n[device_secrets]\n* = s\n", text);
	fclose(f);
	err[0] = '\0';
	cfg = config_load(path, err, errlen);
	unlink(path);
	return cfg;
}

TEST(config_addresses_accepted)
{
	static const char *const ok[] = {
		"[redis]\nhost = 127.0.0.1\n",
		"[redis]\nhost = ::1\n",
		"[postgres]\nconninfo = host=10.0.0.1,10.0.0.2 port=5432,5433 dbname=a\n",
		"[postgres]\nconninfo = host=/var/run/postgresql dbname=a\n",
		"[postgres]\nconninfo = host=db.example hostaddr=10.0.0.1 dbname=a\n",
		"[postgres]\nconninfo = postgresql://10.0.0.1:5432/a\n",
	};
	char err[512];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct config *cfg = load_addr(ok[i], err, sizeof(err));

		CHECK(cfg != NULL);
		if (cfg == NULL)
			fprintf(stderr, "  %s -> %s\n", ok[i], err);
		config_free(cfg);
	}
}

TEST(config_addresses_names_refused)
{
	char err[512];
	struct config *cfg;

	cfg = load_addr("[redis]\nhost = redis.local\n", err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK(strstr(err, "[redis] host") != NULL);
	CHECK(strstr(err, "blocking lookup") != NULL);
	config_free(cfg);

	cfg = load_addr("[postgres]\nconninfo = host=10.0.0.1,db2.example dbname=a\n",
			err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK(strstr(err, "\"db2.example\"") != NULL);
	CHECK(strstr(err, "hostaddr") != NULL);
	config_free(cfg);

	cfg = load_addr("[postgres]\nconninfo = host=10.0.0.1 nosuchkey=1\n",
			err, sizeof(err));
	CHECK(cfg == NULL);
	CHECK(strstr(err, "[postgres] conninfo") != NULL);
	config_free(cfg);
}
